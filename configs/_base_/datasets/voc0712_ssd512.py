# PASCAL VOC for SSD512: the SSD300 data recipe with 512x512 inputs.
_base_ = ['./voc0712_ssd300.py']
input_size = 512
mean_rgb = [123.675, 116.28, 103.53]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='Expand', mean=mean_rgb, ratio_range=(1, 4), prob=0.5),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(dataset=dict(datasets=[
    dict(type='VOCDataset', data_root='data/VOCdevkit/',
         ann_file='VOC2007/ImageSets/Main/trainval.txt', data_prefix=dict(sub_data_root='VOC2007/'),
         filter_cfg=dict(filter_empty_gt=True, min_size=0), use_difficult=True,  # as SSD300
         pipeline=train_pipeline),
    dict(type='VOCDataset', data_root='data/VOCdevkit/',
         ann_file='VOC2012/ImageSets/Main/trainval.txt', data_prefix=dict(sub_data_root='VOC2012/'),
         filter_cfg=dict(filter_empty_gt=True, min_size=0), use_difficult=True,  # as SSD300
         pipeline=train_pipeline),
])))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# Test-time augmentation (tools/test.py --tta): the image and its mirror image; the
# detections of both go through one NMS (DetTTAModel: IoU and max_per_img of the model's
# test_cfg). The SSD papers report single-view results; this is an extra, not the recipe.
tta_model = dict(type='DetTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(input_size, input_size), keep_ratio=False)],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations')],
        [dict(type='PackDetInputs')]])]

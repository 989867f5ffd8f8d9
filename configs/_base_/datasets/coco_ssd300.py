# COCO 2017 for SSD300: train2017 for training, val2017 for evaluation. Layout: data/README.md.
dataset_type = 'CocoDetDataset'
data_root = 'data/coco/'
input_size = 300
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

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='RepeatDataset',
        times=5,
        dataset=dict(type=dataset_type, data_root=data_root,
                     ann_file='annotations/instances_train2017.json',
                     data_prefix=dict(img='train2017/'),
                     filter_cfg=dict(filter_empty_gt=True, min_size=32),
                     pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val2017.json',
                     metric='bbox', classwise=True)
test_evaluator = val_evaluator

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

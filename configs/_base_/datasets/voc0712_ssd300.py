# PASCAL VOC for SSD300: train on VOC2007 trainval + VOC2012 trainval, test on VOC2007 test.
# Layout: data/README.md.
dataset_type = 'VOCDataset'
data_root = 'data/VOCdevkit/'
input_size = 300
mean_rgb = [123.675, 116.28, 103.53]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='Expand', mean=mean_rgb, ratio_range=(1, 4), prob=0.5),        # zoom out
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# Annotations are loaded after Resize so that the metric sees original-image boxes.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackDetInputs'),
]

# Difficult objects: Caffe SSD trains on them as ordinary ground truth (ssd_pascal.py:
# train_on_diff_gt = True), hence use_difficult=True below; mmdetection instead marks them
# ignored, which SSD's assigner leaves out of training. The test set keeps them ignored (the
# devkit neither rewards nor punishes detections on them).
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='RepeatDataset',
        times=10,
        dataset=dict(
            type='ConcatDataset',
            datasets=[
                dict(type=dataset_type, data_root=data_root,
                     ann_file='VOC2007/ImageSets/Main/trainval.txt',
                     data_prefix=dict(sub_data_root='VOC2007/'),
                     filter_cfg=dict(filter_empty_gt=True, min_size=0), use_difficult=True,
                     pipeline=train_pipeline),
                dict(type=dataset_type, data_root=data_root,
                     ann_file='VOC2012/ImageSets/Main/trainval.txt',
                     data_prefix=dict(sub_data_root='VOC2012/'),
                     filter_cfg=dict(filter_empty_gt=True, min_size=0), use_difficult=True,
                     pipeline=train_pipeline),
            ])))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='VOC2007/ImageSets/Main/test.txt',
                 data_prefix=dict(sub_data_root='VOC2007/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader

# VOC2007 test: 11-point interpolated AP at IoU 0.5, 'difficult' objects ignored.
val_evaluator = dict(type='VOCMetric', iou_thr=0.5, eval_mode='11points')
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

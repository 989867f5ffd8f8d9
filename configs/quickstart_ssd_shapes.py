# Quickstart: a small SSD (VGG16 at a quarter width, with BatchNorm so that it trains from
# scratch) on the synthetic shapes data that densebox generates itself (data/shapes,
# 1000 training and 200 held-out images of 160x160, used at 128x128). Runs on a laptop
# CPU in minutes:
#   densebox quickstart          (or: python tools/quickstart.py)
_base_ = ['./_base_/default_runtime.py']

data_root = 'data/shapes/'
classes = ('circle', 'square', 'triangle', 'star', 'cross')  # densebox.datasets.SHAPES_CLASSES
input_size = 128  # the 160x160 images are trained and tested at 128x128

model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    backbone=dict(type='SSDVGG', arch='vgg16-quarter', with_bn=True),
    neck=dict(
        type='SSDNeck',
        in_channels=(128, 256),
        out_channels=(128, 256, 128, 128, 128),  # maps of 16, 8, 4, 2, 1
        level_strides=(2, 2, 2),
        level_paddings=(1, 1, 1),
        l2_norm_scale=20),
    bbox_head=dict(
        type='SSDHead',
        num_classes=len(classes),
        in_channels=(128, 256, 128, 128, 128),
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            input_size=input_size,
            strides=(8, 16, 32, 64, 128),
            min_sizes=(13, 26, 51, 80, 109),
            max_sizes=(26, 51, 80, 109, 134),
            ratios=([2], [2, 3], [2, 3], [2], [2])),
        bbox_coder=dict(type='DeltaXYWHBoxCoder', variances=(0.1, 0.1, 0.2, 0.2))),
    train_cfg=dict(matcher=dict(type='SSDMatcher', pos_iou_thr=0.5, neg_iou_thr=0.5),
                   neg_pos_ratio=3, smooth_l1_beta=1.0, loc_weight=1.0),
    test_cfg=dict(score_thr=0.01, nms_pre=400, nms_iou_thr=0.45, max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
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
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CocoDetDataset', data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='images/train/'),
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDetDataset', data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='images/val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
                     metric='bbox', classwise=True)
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
                     clip_grad=dict(max_norm=10.0))  # from scratch: AdamW is steadier than SGD here
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-4),
]
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)

# Test-time augmentation (densebox test ... --tta): the image and its mirror image, merged
# by one NMS (DetTTAModel).
tta_model = dict(type='DetTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(input_size, input_size), keep_ratio=False)],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations')],
        [dict(type='PackDetInputs')]])]

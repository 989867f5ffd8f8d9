# Segmentation quickstart: a small FFNet-style encoder-decoder (slim ResNet-22S, up-head C)
# on the synthetic shapes masks that densebox generates itself (data/shapes; background +
# 5 shape classes). Runs on a laptop CPU in minutes:
#   densebox quickstart --task seg
_base_ = [
    './_base_/datasets/shapes_seg.py',
    './_base_/default_runtime.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], pad_size_divisor=32, seg_pad_value=255),
    backbone=dict(type='FFNetResNet', arch='22S', out_indices=(0, 1, 2, 3), norm_cfg=norm_cfg),
    decode_head=dict(
        type='FFNetUpHead',
        in_channels=(64, 128, 192, 320),
        in_index=(0, 1, 2, 3),
        up_head='C',
        seg_head='C',
        num_classes=6,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# Smaller crops than the data set's default, so that a CPU gets through enough iterations.
crop_size = (96, 96)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='RandomResize', scale=(160, 160), ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='SegPad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))  # from scratch
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),  # warm-up
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=100, end=max_iters, by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_best=None))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# Segmentation quickstart: a small FFNet-style encoder-decoder (slim ResNet-22S, up-head B,
# seg-head C) on the synthetic shapes masks that densebox generates itself (data/shapes;
# background + 5 shape classes). Runs on a 2-core CPU in about 13.5 minutes (mIoU 77.3):
#   densebox quickstart --task seg
#
# It trains and predicts at half the images' size (80 px for the 160 px images); the
# predicted logits are resized back, and mIoU is measured on the full-size masks. At full
# size the shapes (19 to 80 px) outgrow what the network can relate from scratch in a CPU
# budget: it stays at "background everywhere" for thousands of crops, while at half size
# whole shapes fit its receptive field and it tells them apart within a few epochs.
_base_ = [
    './_base_/datasets/shapes_seg.py',
    './_base_/default_runtime.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], pad_size_divisor=16, seg_pad_value=255),
    backbone=dict(type='FFNetResNet', arch='22S', out_indices=(0, 1, 2, 3), norm_cfg=norm_cfg),
    decode_head=dict(
        type='FFNetUpHead',
        in_channels=(64, 128, 192, 320),
        in_index=(0, 1, 2, 3),
        up_head='B',
        seg_head='C',
        num_classes=6,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

scale = (80, 80)  # half of the 160 x 160 shapes images
crop_size = (80, 80)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='SegPad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    # loaded after Resize: the metric compares with the full-size mask
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=16,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=25, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 1200  # about 19 epochs of the 1,000 training images
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=3e-3, weight_decay=1e-4))  # from scratch
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),  # warm-up
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=50, end=max_iters, by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_best=None))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# Test-time augmentation (densebox test ... --tta --task seg): three scales around the test
# scale, each also mirrored; class probabilities averaged (SegTTAModel).
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(s, s), keep_ratio=True) for s in (64, 80, 96)],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True)],
        [dict(type='PackSegInputs')]])]

# ReCo+ (Shin, Xie and Albanie, NeurIPS'22) on Cityscapes, 27 classes: a DeepLabv3+ ResNet-101
# trained with densebox's own training stack on ReCo's pseudo-labels of the train split (no
# human labels). First make the pseudo-labels (ReCo with the CRF, as the paper):
#   python tools/reco.py pseudo-labels --config configs/reco_cityscapes.py --split train \
#       --out work_dirs/reco_cityscapes/pseudo_labels --cfg-options model.crf=True
#   python tools/train.py configs/reco_plus_cityscapes.py
# Recipe (ReCo+ code): DeepLabv3+ R101 at output stride 8 (ASPP rates 12/24/36), depthwise-
# separable head, backbone BN momentum 0.01, ImageNet-initialised backbone; cross-entropy;
# Adam lr 5e-4 (backbone 0.1x), weight decay 2e-4, poly 0.9, 20k iterations, batch 8;
# 320 crops of the 320-px centre crop, random scale 0.5-2, flip, photometric jitter;
# validation every 1000 iterations, the best-mIoU checkpoint kept.
# Paper: 83.7 pixel accuracy / 24.2 mIoU on Cityscapes val (27 classes).
_base_ = ['./_base_/default_runtime.py']

classes = ('road', 'sidewalk', 'parking', 'rail track', 'building', 'wall', 'fence',
           'guard rail', 'bridge', 'tunnel', 'pole', 'polegroup', 'traffic light',
           'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
           'bus', 'caravan', 'trailer', 'train', 'motorcycle', 'bicycle')
pseudo_labels = 'work_dirs/reco_cityscapes/pseudo_labels'
crop_size = (320, 320)

model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], pad_size_divisor=8, seg_pad_value=255),
    backbone=dict(type='TorchvisionResNet', depth=101, out_indices=(0, 3),
                  replace_stride_with_dilation=(False, True, True), bn_momentum=0.01,
                  init_cfg=dict(type='Pretrained',
                                checkpoint='zoo://resnet101_imagenet_torchvision')),
    decode_head=dict(
        type='DeepLabV3PlusHead', in_channels=2048, c1_in_channels=256, channels=256,
        c1_channels=48, dilations=(12, 24, 36), separable=True, aspp_dropout=0.1,
        in_index=(0, 1), dropout_ratio=0.0, num_classes=len(classes),
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(4096, 320), keep_ratio=True),
    dict(type='CenterCrop', crop_size=320, as_original=False),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),  # 320 x 320
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='SegPad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
# validation as ReCo's evaluation: the 320 centre crop against the real labels
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='Resize', scale=(4096, 320), keep_ratio=True, interpolation='nearest'),
    dict(type='CenterCrop', crop_size=320, as_original=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='BaseSegDataset',  # pseudo-label pngs hold the 27 class indices directly
        metainfo=dict(classes=classes),
        data_root='data/cityscapes/',
        img_suffix='_leftImg8bit.png',
        seg_map_suffix='.png',
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path=pseudo_labels),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='Cityscapes27Dataset',
        data_root='data/cityscapes/',
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        test_mode=True,
        pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 20000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=5e-4, betas=(0.9, 0.999), weight_decay=2e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
                        by_epoch=False)]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=1000, max_keep_ckpts=1, save_best='mIoU',
                    rule='greater'))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# No test-time augmentation: ReCo is evaluated on one view (its resize and centre crop),
# as the paper reports it; tools/test.py --tta says so.
tta_model = None
tta_pipeline = None

# FFNet 150 A-A-A, GPU-large (Mehta et al., CVPR'22 ECV workshop; Qualcomm-AI-research/FFNet,
# `segmentation_ffnet150_AAA`): ResNet-150 of BasicBlocks, 7x7 stem, stages [16, 18, 28, 12],
# widths 64/128/256/512; up-head A, seg-head A, bilinear upsampling.
# Input 1024x2048, logits at 1/4 (256x512); Cityscapes val 84.4 mIoU (repo README).
# The backbone starts from FFNet's ImageNet classifier classification_ffnet150_AAX; the
# up-head from scratch (FFNet's pretrained_backbone_only).
# norm: plain BN; multi-GPU users switch norm_cfg to dict(type='SyncBN').
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    pad_size_divisor=32,
    seg_pad_value=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='FFNetResNet',
        arch='150',
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='zoo://ffnet150_imagenet_qualcomm')),
    decode_head=dict(
        type='FFNetUpHead',
        in_channels=(64, 128, 256, 512),
        in_index=(0, 1, 2, 3),
        up_head='A',                  # adapters 64/128/256/512, level outputs 128 x 4
        seg_head='A',                 # 3x3 conv-BN-ReLU 512, 1x1 classifier
        upsample_mode='bilinear',     # GPU models (align_corners=True inside the head)
        num_classes=19,
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

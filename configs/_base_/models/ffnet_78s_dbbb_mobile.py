# FFNet 78S dBBB mobile (Mehta et al., CVPR'22 ECV workshop; Qualcomm-AI-research/FFNet,
# `segmentation_ffnet78S_dBBB_mobile`): slim ResNet-78 backbone with stride 2 in stage 1
# (features at 1/8 ... 1/64), up-head B, seg-head B, nearest-neighbour upsampling.
# Input 1024x2048, logits at 1/8 (128x256); Cityscapes val 81.3 mIoU (repo README).
# The repo initialises the backbone from its own ImageNet run (classification_ffnet78S_BBX_mobile,
# a ResNet-78S without the 'd': layer1.0.downsample, which only the 'd' variant has, keeps its
# init, as in FFNet) and trains the up-head from scratch.
# norm: plain BN so that the recipe runs on one GPU / CPU; multi-GPU users switch
# norm_cfg to dict(type='SyncBN').
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[123.675, 116.28, 103.53],   # ImageNet RGB statistics, 0-255 units
    std=[58.395, 57.12, 57.375],
    pad_size_divisor=64,              # output stride of the deepest "d" stage
    seg_pad_value=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='FFNetResNet',
        arch='d78S',                  # stages [6, 12, 12, 8], widths 64/128/192/320
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='zoo://ffnet78s_imagenet_qualcomm')),
    decode_head=dict(
        type='FFNetUpHead',
        in_channels=(64, 128, 192, 320),
        in_index=(0, 1, 2, 3),
        up_head='B',                  # adapters 64/128/128/256, level outputs 96/96/64/32
        seg_head='B',                 # 3x3 conv-BN-ReLU 256, 3x3 classifier
        upsample_mode='nearest',      # mobile models
        num_classes=19,
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))      # FFNet evaluates the full 1024x2048 image

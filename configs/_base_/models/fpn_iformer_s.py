# Semantic FPN (Kirillov et al., CVPR'19) on iFormer-S (Si et al., NeurIPS'22), as
# MMSegmentation's fpn_r50 builds it: an FPN neck of 256 channels on the four stage outputs
# (strides 4-32), then the panoptic-FPN head (128 channels, each level upsampled to 1/4 by
# conv-norm-ReLU + 2x bilinear steps, summed), dropout 0.1, 1x1 classifier.
# Paper (ADE20K val): 48.6 mIoU with 24M params and 181 GFLOPs.
# norm: plain BN so the recipe also runs on one GPU / the CPU; multi-GPU: dict(type='SyncBN').
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[123.675, 116.28, 103.53],   # ImageNet RGB statistics, as the iFormer weights
    std=[58.395, 57.12, 57.375],
    pad_size_divisor=32,
    seg_pad_value=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='IFormer',
        arch='s',
        out_indices=(0, 1, 2, 3),     # 96 / 192 / 320 / 384 channels at strides 4 / 8 / 16 / 32
        drop_path_rate=0.1,           # not stated in the sources read here: densebox's choice
        init_cfg=dict(type='Pretrained', checkpoint='zoo://iformer_s_in1k')),
    neck=dict(
        type='FPN',
        in_channels=[96, 192, 320, 384],
        out_channels=256,
        num_outs=4),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

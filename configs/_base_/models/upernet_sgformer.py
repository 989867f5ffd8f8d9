# UperNet (Xiao et al., ECCV'18) on SG-Former (Ren et al., ICCV'23), as MMSegmentation builds
# UperNet on Swin: PPM (scales 1, 2, 3, 6) on the stride-32 output, FPN fusion of the four
# stage outputs, 512 channels, dropout 0.1; an auxiliary FCN head (256 channels, loss weight
# 0.4) on the stride-16 output. Sizes here are SG-Former-B's.
# norm: plain BN so the recipe also runs on one GPU / the CPU; multi-GPU: dict(type='SyncBN').
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[123.675, 116.28, 103.53],   # ImageNet RGB statistics, as the SG-Former weights
    std=[58.395, 57.12, 57.375],
    pad_size_divisor=32,
    seg_pad_value=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='SGFormer',
        arch='b',
        out_indices=(0, 1, 2, 3),     # 96 / 192 / 384 / 768 channels at strides 4 / 8 / 16 / 32
        drop_path_rate=0.3,           # Swin-B's UperNet value; SG-Former's is not stated here
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/sgformer_b_in1k.pth')),
    decode_head=dict(
        type='UPerHead',
        in_channels=[96, 192, 384, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=384,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

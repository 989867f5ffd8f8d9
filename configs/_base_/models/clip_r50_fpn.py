# The DenseCLIP paper's baseline "RN50-CLIP": CLIP's RN50 image tower (open_clip, OpenAI's
# weights) without its attention pool, FPN (256) + Semantic FPN head (256 channels, SyncBN,
# dropout 0.1) (raoyongming/DenseCLIP, segmentation/configs/fpn_clipres50_512x512_80k.py).
# The CLIP weights are the zoo entry 'clip_rn50_openai'; put RN50.pt in
# ~/.cache/densebox/checkpoints/downloads/ (README, DenseCLIP).
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when not distributed
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[122.7709383, 116.7460125, 104.09373615],  # CLIP's RGB mean / std x 255
    std=[68.5005327, 66.6321579, 70.32316304],
    pad_size_divisor=1,
    seg_pad_value=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='CLIPResNet',
        arch='RN50',
        input_resolution=512,
        get_embeddings=False,
        pretrained='clip_rn50_openai'),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=4),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=256,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

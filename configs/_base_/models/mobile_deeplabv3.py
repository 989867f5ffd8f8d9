# Mobile DeepLabv3 (Sandler et al., MobileNetV2, CVPR'18, Sec. 6.3): MobileNetV2 at output
# stride 16, DeepLabv3 head on the second-to-last feature (320 channels, not the 1280 conv)
# with the ASPP atrous branches dropped: a 1x1 branch + image pooling (256 channels each),
# 1x1 projection, classifier. 2.11M params, 2.75B MAdds at 513x513 (paper; densebox:
# 2,113,557 and 2.74B); VOC12 val 75.32 mIoU (COCO-pretrained, single scale, no flip).
# Full DeepLabv3 head: decode_head.dilations=(6, 12, 18) (4.52M params).
# norm: plain BN; multi-GPU users switch norm_cfg to dict(type='SyncBN').
# Normalisation: ImageNet RGB mean/std, matching torchvision's ImageNet weights (the TF
# reference scales pixels to [-1, 1] instead).
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    pad_size_divisor=16,
    seg_pad_value=255,
    size=(512, 512))                 # pad every batch to at least the training crop
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MobileNetV2',
        widen_factor=1.0,
        out_indices=(6,),             # the 320-channel feature; no 1280 conv is built
        output_stride=16,
        norm_cfg=norm_cfg,
        # ImageNet MobileNetV2 (torchvision's weights; tools/train.py stops and says where
        # to get them when they are not in $DENSEBOX_HOME/checkpoints). The paper's 75.32
        # also pre-trains on COCO before VOC, which this recipe does not.
        init_cfg=dict(type='Pretrained', checkpoint='zoo://mobilenet_v2_imagenet_torchvision')),
    decode_head=dict(
        type='ASPPHead',
        in_channels=320,
        in_index=0,
        channels=256,
        dilations=(),                 # mobile version: no atrous branches
        image_pool=True,
        num_classes=21,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

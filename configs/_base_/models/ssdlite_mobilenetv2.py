# SSDLite on MobileNetV2 (Sandler et al., 2018): every prediction and extra layer is a
# depthwise-separable conv; the first head sits on the expansion of layer 15 (576 channels,
# stride 16), the second on the final 1x1 conv (1280 channels, stride 32). Input 320.
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # RGB ImageNet statistics, 0-255
        std=[58.395, 57.12, 57.375],
        pad_size_divisor=1),
    backbone=dict(
        type='MobileNetV2',
        widen_factor=1.0,
        out_indices=('layer15_expansion', 7),
        # From scratch, as mmdetection's recipe (21.3 AP after 600 epochs). The paper's 22.1
        # starts from ImageNet MobileNetV2 (TF Object Detection API); for that start set
        # init_cfg=dict(type='Pretrained', checkpoint='zoo://mobilenet_v2_imagenet_torchvision').
        init_cfg=None),
    neck=dict(
        type='SSDNeck',
        in_channels=(576, 1280),
        out_channels=(576, 1280, 512, 256, 256, 128),  # maps of 20, 10, 5, 3, 2, 1
        level_strides=(2, 2, 2, 2),
        level_paddings=(1, 1, 1, 1),
        l2_norm_scale=None,
        use_depthwise=True,
        use_norm=True,
        act='ReLU6'),
    bbox_head=dict(
        type='SSDHead',
        num_classes=80,
        in_channels=(576, 1280, 512, 256, 256, 128),
        use_depthwise=True,
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            input_size=320,
            strides=(16, 32, 64, 107, 160, 320),
            min_sizes=(48, 100, 150, 202, 253, 304),
            max_sizes=(100, 150, 202, 253, 304, 320),
            ratios=([2, 3], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3])),
        bbox_coder=dict(type='DeltaXYWHBoxCoder', variances=(0.1, 0.1, 0.2, 0.2))),
    train_cfg=dict(
        matcher=dict(type='SSDMatcher', pos_iou_thr=0.5, neg_iou_thr=0.5),
        neg_pos_ratio=3,
        smooth_l1_beta=1.0,
        loc_weight=1.0),
    test_cfg=dict(score_thr=0.01, nms_pre=400, nms_iou_thr=0.45, max_per_img=200))

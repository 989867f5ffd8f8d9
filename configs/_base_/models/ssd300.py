# SSD300 with the VGG16 trunk (Liu et al., 2016). Default boxes are those of the VOC
# recipe; the COCO recipe overrides their sizes.
#
# Starting point, as in Caffe SSD and mmdetection: the reduced-fc ImageNet VGG16
# (VGG_ILSVRC_16_layers_fc_reduced: conv1_1 ... conv5_3, fc6 / fc7 as 1024-channel convs),
# in the form OpenMMLab converted it (mmdetection's open-mmlab://vgg16_caffe). Missing from
# $DENSEBOX_HOME/checkpoints, tools/train.py stops and says where to get it; train from
# scratch on purpose with --cfg-options model.backbone.init_cfg=None.
# What the first conv sees: RGB in 0-255 minus the mean, std 1. Caffe trained these weights
# on BGR minus (B, G, R) = (104, 117, 123); the zoo's converter reverses conv1_1's input
# channels so that this RGB input meets them as trained (mmdetection feeds the file RGB
# as it is; whether OpenMMLab's conversion had already reordered conv1_1 is not
# documented). The mean below is mmdetection's, within one grey level of Caffe SSD's.
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # RGB, 0-255 (VGG16 ImageNet statistics)
        std=[1.0, 1.0, 1.0],
        pad_size_divisor=1),
    backbone=dict(
        type='SSDVGG',
        out_feature_indices=(22, 34),  # conv4_3 (38x38) and fc7 (19x19)
        init_cfg=dict(type='Pretrained', checkpoint='zoo://vgg16_reducedfc_imagenet_openmmlab')),
    neck=dict(
        type='SSDNeck',
        in_channels=(512, 1024),
        out_channels=(512, 1024, 512, 256, 256, 256),  # maps of 38, 19, 10, 5, 3, 1
        level_strides=(2, 2, 1, 1),
        level_paddings=(1, 1, 0, 0),
        l2_norm_scale=20),
    bbox_head=dict(
        type='SSDHead',
        num_classes=20,
        in_channels=(512, 1024, 512, 256, 256, 256),
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            input_size=300,
            strides=(8, 16, 32, 64, 100, 300),
            min_sizes=(30, 60, 111, 162, 213, 264),
            max_sizes=(60, 111, 162, 213, 264, 315),
            ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2])),
        bbox_coder=dict(type='DeltaXYWHBoxCoder', variances=(0.1, 0.1, 0.2, 0.2))),
    train_cfg=dict(
        matcher=dict(type='SSDMatcher', pos_iou_thr=0.5, neg_iou_thr=0.5),
        neg_pos_ratio=3,          # hard negative mining, 3 negatives per positive
        smooth_l1_beta=1.0,
        loc_weight=1.0),          # alpha
    test_cfg=dict(
        score_thr=0.01,
        nms_pre=400,              # candidates per class before NMS
        nms_iou_thr=0.45,
        max_per_img=200))

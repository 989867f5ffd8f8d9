# SSD512 with an iFormer-S backbone on COCO 2017: densebox's first detection recipe for
# iFormer (the paper's COCO results use Mask R-CNN 1x: 46.2 box AP for S; that recipe comes
# later). Neither paper gives an SSD recipe, so this one is densebox's own: SSD512's data,
# default boxes and schedule (24 epochs of a 5x repeated train2017, lr / 10 at 16 and 20),
# with the optimiser of the transformer detection recipes (AdamW lr 1e-4, weight decay 0.05,
# none on norms and positional embeddings) instead of SGD. Not trained yet: no published AP.
# The stride-8 / 16 / 32 stage outputs (192 / 320 / 384 channels) replace conv4_3 and fc7;
# the SSD neck adds four levels (strides 64 ... 512, the last a 4x4 conv).
_base_ = [
    './_base_/datasets/coco_ssd512.py',
    './_base_/schedules/ssd_sgd_24e.py',
    './_base_/default_runtime.py',
]
levels = (192, 320, 384, 256, 256, 256, 256)   # maps of 64, 32, 16, 8, 4, 2, 1 at 512 x 512
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],          # ImageNet RGB statistics (the iFormer weights)
        std=[58.395, 57.12, 57.375],
        pad_size_divisor=1),
    backbone=dict(
        type='IFormer',
        arch='s',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='zoo://iformer_s_in1k')),
    neck=dict(
        type='SSDNeck',
        in_channels=levels[:3],
        out_channels=levels,
        level_strides=(2, 2, 2, 1),
        level_paddings=(1, 1, 1, 1),
        last_kernel_size=4,
        l2_norm_scale=None),                     # the stage outputs are LayerNorm-ed already
    bbox_head=dict(
        type='SSDHead',
        num_classes=80,
        in_channels=levels,
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            input_size=512,
            strides=(8, 16, 32, 64, 128, 256, 512),
            # SSD512's COCO default boxes: 4% of the input, then 10% ... 106%
            min_sizes=(20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8),
            max_sizes=(51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72),
            ratios=([2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2])),
        bbox_coder=dict(type='DeltaXYWHBoxCoder', variances=(0.1, 0.1, 0.2, 0.2))),
    train_cfg=dict(
        matcher=dict(type='SSDMatcher', pos_iou_thr=0.5, neg_iou_thr=0.5),
        neg_pos_ratio=3,
        smooth_l1_beta=1.0,
        loc_weight=1.0),
    test_cfg=dict(score_thr=0.01, nms_pre=400, nms_iou_thr=0.45, max_per_img=200))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.0)}))

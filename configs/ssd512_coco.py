# SSD512 on COCO 2017 (paper: 26.8 AP test-dev; mmdet 29.4 on val).
_base_ = [
    './_base_/models/ssd512.py',
    './_base_/datasets/coco_ssd512.py',
    './_base_/schedules/ssd_sgd_24e.py',
    './_base_/default_runtime.py',
]
# COCO default boxes: 4% of the input at conv4_3, then 10% ... 106% in equal steps.
model = dict(
    bbox_head=dict(
        num_classes=80,
        anchor_generator=dict(
            min_sizes=(20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8),
            max_sizes=(51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72))))

# SSD512 on PASCAL VOC07+12, evaluated on VOC2007 test (paper: 79.8 mAP with zoom-out).
_base_ = [
    './_base_/models/ssd512.py',
    './_base_/datasets/voc0712_ssd512.py',
    './_base_/schedules/ssd_sgd_24e.py',
    './_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=20))

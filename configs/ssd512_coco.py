# SSD512 on COCO 2017 (paper: 26.8 AP test-dev; mmdet 29.4 on val).
# Starts from Caffe SSD's reduced-fc ImageNet VGG16 (zoo://vgg16_reducedfc_imagenet_openmmlab,
# see _base_/models/ssd300.py). Total batch 32 as in Caffe SSD (8 per GPU x 4 GPUs): 32 per
# GPU on one GPU; on 8 GPUs add --cfg-options train_dataloader.batch_size=4.
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

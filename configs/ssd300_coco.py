# SSD300 on COCO 2017 (paper: 23.2 AP test-dev; torchvision 25.1, mmdet 25.5 on val).
# Starts from Caffe SSD's reduced-fc ImageNet VGG16 (zoo://vgg16_reducedfc_imagenet_openmmlab,
# see _base_/models/ssd300.py). Total batch 32 as in Caffe SSD (8 per GPU x 4 GPUs): 32 per
# GPU on one GPU; on 8 GPUs add --cfg-options train_dataloader.batch_size=4.
_base_ = [
    './_base_/models/ssd300.py',
    './_base_/datasets/coco_ssd300.py',
    './_base_/schedules/ssd_sgd_24e.py',
    './_base_/default_runtime.py',
]
# COCO default boxes: 7% of the input at conv4_3, then 15% ... 105% (the COCO script).
model = dict(
    bbox_head=dict(
        num_classes=80,
        anchor_generator=dict(
            min_sizes=(21, 45, 99, 153, 207, 261),
            max_sizes=(45, 99, 153, 207, 261, 315))))
# COCO x5 x24 / 32 = 443k iterations, drops at ~296k and ~370k (paper: 400k, 280k / 360k).

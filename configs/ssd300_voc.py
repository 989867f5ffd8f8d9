# SSD300 on PASCAL VOC07+12, evaluated on VOC2007 test (paper: 77.2 mAP with zoom-out).
# Starts from Caffe SSD's reduced-fc ImageNet VGG16 (zoo://vgg16_reducedfc_imagenet_openmmlab,
# see _base_/models/ssd300.py). Total batch 32 as in Caffe SSD (8 per GPU x 4 GPUs): 32 per
# GPU on one GPU; on 8 GPUs add --cfg-options train_dataloader.batch_size=4.
_base_ = [
    './_base_/models/ssd300.py',
    './_base_/datasets/voc0712_ssd300.py',
    './_base_/schedules/ssd_sgd_24e.py',
    './_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=20))

# Mobile DeepLabv3: MobileNetV2 at output stride 16 with the 1x1 + image-pooling head.
# PASCAL VOC 2012 + SBD augmented training set, 512x512 crops, SGD + poly, 20k iterations,
# total batch 16 (4 per GPU x 4 GPUs). Published: 75.32 mIoU on VOC12 val, from a model
# pre-trained on COCO then VOC; this recipe starts from ImageNet MobileNetV2 only
# ('zoo://mobilenet_v2_imagenet_torchvision', see the model config), so expect less.
_base_ = [
    './_base_/models/mobile_deeplabv3.py',
    './_base_/datasets/voc12_seg.py',
    './_base_/schedules/seg_poly_20k.py',
    './_base_/default_runtime.py',
]
train_dataloader = dict(dataset={{_base_.voc_aug_train}})
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=2000, save_best='mIoU', rule='greater'),
    logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)

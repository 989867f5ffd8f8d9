# FFNet 150 AAA (GPU-large): BasicBlock ResNet-150, 7x7 stem, up-head A, bilinear upsampling.
# Cityscapes 512x1024 crops, SGD + poly, 80k iterations, total batch 8 (2 per GPU x 4 GPUs).
# Starts from FFNet's ImageNet ResNet-150 (zoo://ffnet150_imagenet_qualcomm). FFNet's own
# Cityscapes schedule is in its paper only; this is mmsegmentation's.
# Published (FFNet README, full-resolution input): 84.4 mIoU on Cityscapes val.
_base_ = [
    './_base_/models/ffnet_150_aaa.py',
    './_base_/datasets/cityscapes.py',
    './_base_/schedules/seg_poly_80k.py',
    './_base_/default_runtime.py',
]
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=8000, save_best='mIoU', rule='greater'),
    logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)

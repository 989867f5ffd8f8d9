# FFNet 78S dBBB (mobile): slim BasicBlock ResNet-78 encoder, small up-head, no dilation.
# Cityscapes 512x1024 crops, SGD + poly, 80k iterations, total batch 8 (2 per GPU x 4 GPUs).
# Starts from FFNet's ImageNet ResNet-78S (zoo://ffnet78s_imagenet_qualcomm). FFNet's own
# Cityscapes schedule is in its paper only; this is mmsegmentation's.
# Published (FFNet README, full-resolution input): 81.3 mIoU on Cityscapes val.
_base_ = [
    './_base_/models/ffnet_78s_dbbb_mobile.py',
    './_base_/datasets/cityscapes.py',
    './_base_/schedules/seg_poly_80k.py',
    './_base_/default_runtime.py',
]
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=8000, save_best='mIoU', rule='greater'),
    logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)
# Official Cityscapes figures as well: replace the evaluator with
#   test_evaluator = [dict(type='IoUMetric'), dict(type='CityscapesMetric', output_dir='work_dirs/cs_preds')]

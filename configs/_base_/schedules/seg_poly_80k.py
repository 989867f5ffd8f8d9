# 80k-iteration SGD + poly schedule (mmsegmentation's schedule_80k, used for its
# Cityscapes 512x1024 recipes with batch 8). FFNet's own Cityscapes schedule is given only
# in its paper and could not be checked here.
# Iteration-based: the top-level config should also set
#   default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8000),
#                        logger=dict(log_metric_by_epoch=False))
#   log_processor = dict(by_epoch=False)
# (they are not set here because default_runtime.py already defines them, and mmengine
# forbids the same key in two _base_ files).
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=80000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
# Total batch 8 = 2 per GPU x 4 GPUs (mmsegmentation's Cityscapes recipes).
auto_scale_lr = dict(enable=False, base_batch_size=8)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# 20k-iteration SGD + poly schedule (mmsegmentation's schedule_20k, used for its DeepLabv3
# VOC12-aug 512x512 recipe with batch 16 = 4 GPUs x 4).
# Iteration-based: the top-level config should also set
#   default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000),
#                        logger=dict(log_metric_by_epoch=False))
#   log_processor = dict(by_epoch=False)
# (default_runtime.py already defines them; mmengine forbids duplicate _base_ keys).
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=20000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=20000, val_interval=2000)
# Total batch 16 = 4 per GPU x 4 GPUs (mmsegmentation's VOC12-aug recipes).
auto_scale_lr = dict(enable=False, base_batch_size=16)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

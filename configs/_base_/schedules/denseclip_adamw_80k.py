# DenseCLIP's ADE20K schedule (raoyongming/DenseCLIP, segmentation/configs/*_80k.py):
# AdamW, lr 1e-4, weight decay 1e-4, 80k iterations at a total batch of 32 (8 GPUs x 4),
# 1500 iterations of linear warm-up from 1e-6 x lr, then poly decay (power 0.9) to 1e-6.
# Parameter groups, by name (mmengine picks the longest key contained in a parameter's
# name, as mmcv did for the original): the backbone at 0.1 x lr; the CLIP text encoder at
# lr 0 (it is also frozen: requires_grad=False, so it is not in the optimiser at all);
# no weight decay on parameters whose name contains 'norm' (outside the backbone that is
# the context decoder's norm1-3; the decode head's BNs are named 'bn', as in the original).
# The 'text_encoder' key selects nothing in the CLIP baseline, which has no text encoder.
# Departure: mmengine chains LinearLR and PolyLR step by step where mmcv scaled the poly
# value by the warm-up factor; over the 80k iterations the two schedules differ by at most
# 0.2% of the base learning rate.
# Iteration-based: the top-level config sets the by_epoch=False hooks and log processor.
optimizer = dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=optimizer,
    clip_grad=None,
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=0.1),
        'text_encoder': dict(lr_mult=0.0),
        'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=1e-6, power=0.9, by_epoch=False, begin=0, end=80000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=32)

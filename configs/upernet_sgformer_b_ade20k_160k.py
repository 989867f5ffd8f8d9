# SG-Former-B + UperNet on ADE20K (Ren et al., ICCV'23; paper: 52.7 mIoU on val).
# The schedule is Swin's UperNet recipe in MMSegmentation, which the paper's comparison with
# Swin follows (its exact values are not confirmed by the sources read here): AdamW lr 6e-5,
# betas (0.9, 0.999), weight decay 0.01 (none on norms and the positional embedding), linear
# warm-up over 1500 iterations, then poly decay (power 1) to 0 at 160k iterations, batch 16
# (8 GPUs x 2), 512 x 512 crops.
# Starts from the official ImageNet-1k SG-Former-B, converted to checkpoints/sgformer_b_in1k.pth
# with tools/convert/sgformer.py (see README); init_cfg=None trains from scratch on purpose.
_base_ = [
    './_base_/models/upernet_sgformer.py',
    './_base_/datasets/ade20k.py',
    './_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=2)   # per GPU; the recipe's total batch is 16

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=16000, save_best='mIoU', rule='greater'),
    logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)

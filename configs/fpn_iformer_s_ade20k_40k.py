# iFormer-S + Semantic FPN on ADE20K (Si et al., NeurIPS'22; paper: 48.6 mIoU on val).
# The schedule is the PVT / PoolFormer Semantic FPN setting (read in sail-sg/poolformer's
# segmentation configs, the lab iFormer comes from): AdamW lr 2e-4, weight decay 1e-4, poly
# decay (power 0.9) to 0 over 40k iterations, batch 32 (8 GPUs x 4), 512 x 512 crops.
# That iFormer used exactly this schedule is not confirmed by the sources read here.
# Starts from the official ImageNet-1k iFormer-S ('zoo://iformer_s_in1k': the Hugging Face
# file is fetched when allowed, see README); init_cfg=None trains from scratch on purpose.
_base_ = [
    './_base_/models/fpn_iformer_s.py',
    './_base_/datasets/ade20k.py',
    './_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=4)   # per GPU; the recipe's total batch is 32

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=40000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=32)

default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=4000, save_best='mIoU', rule='greater'),
    logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)

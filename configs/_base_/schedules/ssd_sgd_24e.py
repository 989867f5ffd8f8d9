# SSD optimisation: SGD lr 1e-3, momentum 0.9, weight decay 5e-4, batch 32, lr / 10 twice.
# With the dataset repeated (see each recipe) the 24 "epochs" are the paper's long schedule
# for the zoom-out augmented models: e.g. VOC07+12 x10 x24 / 32 = 124k iterations with
# drops at ~83k and ~103k (paper: 120k with drops at 80k and 100k).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, milestones=[16, 20], gamma=0.1),
]

# The learning rate above is for a total batch of 32; `--auto-scale-lr` rescales it.
auto_scale_lr = dict(enable=False, base_batch_size=32)

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

# Total batch 32, as Caffe SSD (32 = 8 per GPU x 4 GPUs): the datasets' batch_size=32 is
# per GPU, so this is 32 x 1 GPU; on 8 GPUs set train_dataloader.batch_size=4 (4 x 8 = 32),
# or keep 32 per GPU with --auto-scale-lr (total 256, lr x 8). mmdetection's port trains
# 8 x 8 = 64 at the same lr 1e-3 (half the iterations). tools/train.py logs the total.
auto_scale_lr = dict(enable=False, base_batch_size=32)

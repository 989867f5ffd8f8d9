# SSDLite + MobileNetV2 at 320x320 on COCO 2017 (paper: 22.1 AP test-dev with an ImageNet
# backbone; mmdet 21.3 trained from scratch with this schedule). 4.3M params, 0.8B MAdds.
_base_ = [
    './_base_/models/ssdlite_mobilenetv2.py',
    './_base_/datasets/coco_ssd300.py',
    './_base_/default_runtime.py',
]
input_size = 320
mean_rgb = [123.675, 116.28, 103.53]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Expand', mean=mean_rgb, ratio_range=(1, 4), prob=0.5),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackDetInputs'),
]
tta_pipeline = [  # tools/test.py --tta: as the base's, at 320 px
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(input_size, input_size), keep_ratio=False)],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations')],
        [dict(type='PackDetInputs')]])]
# 24 images per GPU on 8 GPUs (total 192, auto_scale_lr below); on fewer GPUs use
# --auto-scale-lr. The dataset is repeated 5x, so 120 "epochs" are 600 passes.
train_dataloader = dict(batch_size=24, num_workers=4,
                        dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 120
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.015, momentum=0.9, weight_decay=4e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', begin=0, end=max_epochs, T_max=max_epochs, eta_min=0,
         by_epoch=True),
]
auto_scale_lr = dict(enable=False, base_batch_size=192)  # mmdetection: 24 per GPU x 8 GPUs

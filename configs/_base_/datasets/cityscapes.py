# Cityscapes fine annotations, 19 classes (train ids), 2975 train / 500 val images of
# 1024x2048. Layout and the train-id conversion: data/README.md.
# Training: random rescale of (2048, 1024) by 0.5-2.0, 512x1024 crops in which no class
# covers 75% or more, flip, colour jitter; batch 2 per GPU (mmseg's 8 = 4 GPUs x 2).
# Test: the full image resized to fit (2048, 1024) (i.e. unchanged for Cityscapes); ground
# truth loaded after the resize so metrics compare at the original size.
dataset_type = 'CityscapesDataset'
data_root = 'data/cityscapes/'
crop_size = (512, 1024)  # (h, w)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='SegPad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='PackSegInputs'),
]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
# To also get the official cityscapesscripts numbers (and label-id pngs to submit):
# val_evaluator = [dict(type='IoUMetric', iou_metrics=['mIoU']),
#                  dict(type='CityscapesMetric', output_dir='work_dirs/cityscapes_val',
#                       keep_results=False)]
test_evaluator = val_evaluator

# Test-time augmentation (tools/test.py --tta), as MMSegmentation's: the test scale (2048, 1024) times 0.5 to 1.75, each
# also mirrored; the class probabilities of the 12 views are averaged (SegTTAModel).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(2048 * r), int(1024 * r)), keep_ratio=True)
         for r in img_ratios],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True)],
        [dict(type='PackSegInputs')]])]

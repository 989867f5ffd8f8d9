# PASCAL VOC 2012 segmentation, 21 classes (background included). Layout, and how to make
# the SBD "aug" training set: data/README.md.
# Training: random rescale of (2048, 512) by 0.5-2.0, 512x512 crops (no class >= 75%),
# flip, colour jitter, pad to 512x512 with ignore. Test: resize to fit (2048, 512) (short
# side 512 for VOC's ~500x375 images); ground truth at the original size.
dataset_type = 'VOCSegDataset'
data_root = 'data/VOCdevkit/VOC2012/'
crop_size = (512, 512)  # (h, w)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='SegPad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='PackSegInputs'),
]

# VOC2012 train: 1464 images with SegmentationClass masks.
voc_train = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='ImageSets/Segmentation/train.txt',
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
    pipeline=train_pipeline)
# VOC2012 train + SBD ("train_aug", 10582 images, none from VOC val). Published VOC
# numbers (e.g. Mobile DeepLabv3's) train on it: in a recipe write
#   train_dataloader = dict(dataset=voc_aug_train)
voc_aug_train = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='ImageSets/Segmentation/train_aug.txt',
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
    pipeline=train_pipeline)

train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=voc_train)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Segmentation/val.txt',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# Test-time augmentation (tools/test.py --tta), as MMSegmentation's: the test scale (2048, 512) times 0.5 to 1.75, each
# also mirrored; the class probabilities of the 12 views are averaged (SegTTAModel).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True)
         for r in img_ratios],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True)],
        [dict(type='PackSegInputs')]])]

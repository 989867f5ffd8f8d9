"""A few training iterations and an evaluation through tools/train.py and tools/test.py for
each new recipe family: FFNet on Cityscapes, Mobile DeepLabv3 on VOC12, SSDLite on COCO,
each on a tiny data tree laid out as data/README.md describes."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from densebox.cli import test_main as run_test, train_main as run_train
from densebox.datasets import COCO_CLASSES
from densebox.datasets.shapes import generate_shapes
from learning import SAVE_INITIAL_WEIGHTS, train_then_test_before_and_after
from test_seg_datasets import write_cityscapes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

_LOADERS = '''
for _loader in (train_dataloader, val_dataloader, test_dataloader):
    _loader.update(num_workers=0, persistent_workers=False)
'''

# The recipes' segmentation pipelines at a small scale (needs `crop` defined before it).
_SMALL_SEG_PIPELINES = '''train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='SegPad', size=crop, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='PackSegInputs'),
]
'''


def _derived(tmp_path, recipe, body):
    """A config that keeps ``recipe`` (model, data set types, evaluator) on tiny inputs."""
    path = tmp_path / ('tiny_' + recipe)
    path.write_text(f"_base_ = [{osp.join(ROOT, 'configs', recipe)!r}]\n" + body)
    return str(path)


def _train_and_test(config, work):
    run_train([config, '--work-dir', work])
    ckpts = [f for f in os.listdir(work) if f.endswith('.pth')]
    assert ckpts, f'no checkpoint in {work}'
    return run_test([config, osp.join(work, sorted(ckpts)[-1]), '--work-dir', work])


def test_ffnet_cityscapes_recipe(tmp_path):
    data = str(tmp_path / 'cityscapes')
    write_cityscapes(data, split='train', size=(64, 128), dominant=0)  # mostly road
    write_cityscapes(data, split='val', size=(64, 128), seed=1, dominant=0)
    config = _derived(tmp_path, 'ffnet_78s_cityscapes.py', f'''
data_root = {data + '/'!r}
crop = (64, 128)
model = dict(backbone=dict(init_cfg=None))  # from scratch: no ImageNet weights in a test
{_SMALL_SEG_PIPELINES}train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=2, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
''' + SAVE_INITIAL_WEIGHTS + _LOADERS)
    before, after = train_then_test_before_and_after(config, str(tmp_path / 'work'))
    _assert_learned_the_prior(before, after)


def _assert_learned_the_prior(before, after):
    """Two steps learn which class covers most pixels: the trained model predicts it where
    the untrained one predicted noise."""
    assert after['aAcc'] > max(60.0, before['aAcc'] + 30.0), (before, after)
    assert after['mIoU'] > before['mIoU'], (before, after)


def _write_voc_seg(root, names, size=(48, 64), seed=0):
    """VOC12 layout; blocky random masks, about 80% background (a prior to learn)."""
    rng = np.random.default_rng(seed)
    for folder in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                   'ImageSets/Segmentation'):
        os.makedirs(osp.join(root, folder), exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(
            osp.join(root, 'JPEGImages', name + '.jpg'))
        blocks = rng.choice(np.r_[np.arange(21), 255], (size[0] // 8, size[1] // 8))
        blocks[rng.random(blocks.shape) < 0.8] = 0
        mask = np.kron(blocks, np.ones((8, 8), np.int64)).astype(np.uint8)
        for folder in ('SegmentationClass', 'SegmentationClassAug'):
            Image.fromarray(mask).save(osp.join(root, folder, name + '.png'))
    sets = osp.join(root, 'ImageSets', 'Segmentation')
    for split, subset in (('train', names[:2]), ('val', names[2:]), ('train_aug', names[:2])):
        with open(osp.join(sets, split + '.txt'), 'w') as f:
            f.write(''.join(n + '\n' for n in subset))


def test_mobile_deeplabv3_voc_recipe(tmp_path):
    data = str(tmp_path / 'VOCdevkit' / 'VOC2012')
    _write_voc_seg(data, ['2007_000032', '2007_000039', '2008_000001'])
    config = _derived(tmp_path, 'mobile_deeplabv3_voc.py', f'''
crop = (64, 64)
model = dict(backbone=dict(init_cfg=None), data_preprocessor=dict(size=crop))
{_SMALL_SEG_PIPELINES}train_dataloader = dict(batch_size=2, dataset=dict(data_root={data!r}, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root={data!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=2, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
''' + SAVE_INITIAL_WEIGHTS + _LOADERS)
    before, after = train_then_test_before_and_after(config, str(tmp_path / 'work'))
    _assert_learned_the_prior(before, after)


def test_ssdlite_coco_recipe(tmp_path):
    data = str(tmp_path / 'coco')
    generate_shapes(data, num_train=4, num_val=2, img_size=(96, 96), seed=5)
    # COCO's 80 categories with their real, gappy ids; the shapes become the first five.
    coco_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    categories = [dict(id=i, name=n) for i, n in zip(coco_ids, COCO_CLASSES)]
    for split, folder in (('train', 'train2017'), ('val', 'val2017')):
        with open(osp.join(data, 'annotations', f'instances_{split}.json')) as f:
            ann = json.load(f)
        ann['categories'] = categories
        with open(osp.join(data, 'annotations', f'instances_{folder}.json'), 'w') as f:
            json.dump(ann, f)
        os.rename(osp.join(data, 'images', split), osp.join(data, folder))
    config = _derived(tmp_path, 'ssdlite_mobilenetv2_coco.py', f'''
data_root = {data + '/'!r}
train_dataloader = dict(batch_size=2, dataset=dict(times=1, dataset=dict(data_root=data_root)))
val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
''' + _LOADERS)
    metrics = _train_and_test(config, str(tmp_path / 'work'))
    assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0


def test_segmentation_quickstart_recipe(tmp_path):
    """`densebox quickstart --task seg` end to end on a tiny shapes set: the recipe's model,
    half-size training crops, and evaluation against the full-size masks."""
    from densebox.cli import quickstart_main
    data = str(tmp_path / 'shapes')
    body = f'''
data_root = {data + '/'!r}
generate_cfg = dict(num_train=8, num_val=4, img_size=(96, 96), seed=5)
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root, generate_cfg=generate_cfg))
val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, generate_cfg=generate_cfg))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=3, val_interval=3)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=3))
''' + SAVE_INITIAL_WEIGHTS + _LOADERS
    config = _derived(tmp_path, 'quickstart_seg_shapes.py', body)
    work = str(tmp_path / 'work')
    metrics = quickstart_main(['--task', 'seg', '--config', config, '--work-dir', work])
    # the same model before training, on the same held-out images
    before = run_test([config, osp.join(work, 'initial.pth'), '--work-dir', work,
                       '--no-progress'])
    _assert_learned_the_prior(before, metrics)  # background covers most of each image
    assert len(os.listdir(osp.join(data, 'images', 'train'))) == 8  # generate_cfg honoured
    assert osp.isfile(osp.join(tmp_path, 'work', 'iter_3.pth'))

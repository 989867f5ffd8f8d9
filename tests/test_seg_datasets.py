"""Segmentation data sets on tiny trees written to tmp_path, run through the real configs."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

from densebox.datasets.ade20k import ADE20KDataset
from densebox.datasets.base_seg import BaseSegDataset
from densebox.datasets.cityscapes import (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE,
                                          CityscapesDataset)
from densebox.datasets.shapes_seg import SHAPES_SEG_CLASSES, ShapesSegDataset
from densebox.datasets.voc_seg import VOC_SEG_CLASSES, VOCSegDataset, voc_colormap
from densebox.datasets.transforms import seg_transforms  # noqa: F401  (registers them)
from densebox.evaluation import cityscapes_metric, iou_metric  # noqa: F401
from densebox.registry import DATASETS, METRICS, TRANSFORMS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs', '_base_', 'datasets')
init_default_scope('densebox')   # pipelines are built from the densebox registry, as in a Runner


def load_cfg(name):
    return Config.fromfile(osp.join(CONFIGS, name))


def save(path, array, mode=None):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def write_cityscapes(root, split='val', size=(64, 128), seed=0, polygons_only=False,
                     dominant=None):
    """Two cities, three images; masks are blocky random train ids (and 255). With
    ``dominant``, about 80% of the blocks are that train id (a prior a few training steps
    learn)."""
    rng = np.random.default_rng(seed)
    stems = [('aachen', 'aachen_000000_000019'), ('aachen', 'aachen_000001_000019'),
             ('bonn', 'bonn_000002_000019')]
    maps = {}
    for city, stem in stems:
        img = rng.integers(0, 255, size + (3,), dtype=np.uint8)
        save(osp.join(root, 'leftImg8bit', split, city, stem + '_leftImg8bit.png'), img)
        gt_dir = osp.join(root, 'gtFine', split, city)
        if polygons_only:
            h, w = size
            poly = dict(imgHeight=h, imgWidth=w, objects=[
                dict(label='road', polygon=[[0, 0], [w, 0], [w, h], [0, h]]),
                dict(label='car', polygon=[[20, 10], [60, 10], [60, 40], [20, 40]])])
            os.makedirs(gt_dir, exist_ok=True)
            with open(osp.join(gt_dir, stem + '_gtFine_polygons.json'), 'w') as f:
                json.dump(poly, f)
            continue
        small = rng.choice(np.r_[np.arange(19), 255], size=(size[0] // 8, size[1] // 8))
        if dominant is not None:
            small[rng.random(small.shape) < 0.8] = dominant
        train_ids = np.kron(small, np.ones((8, 8), np.int64)).astype(np.uint8)
        save(osp.join(gt_dir, stem + '_gtFine_labelTrainIds.png'), train_ids)
        maps[stem] = train_ids
    return maps


def test_cityscapes_metainfo_matches_cityscapesscripts():
    from cityscapesscripts.helpers.labels import trainId2label
    assert CITYSCAPES_CLASSES == tuple(trainId2label[i].name for i in range(19))
    assert [tuple(c) for c in CITYSCAPES_PALETTE] == [trainId2label[i].color for i in range(19)]
    assert VOC_SEG_CLASSES[0] == 'background' and len(VOC_SEG_CLASSES) == 21
    assert voc_colormap(3) == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    assert len(ADE20KDataset.METAINFO['classes']) == 150
    for name in ('BaseSegDataset', 'CityscapesDataset', 'VOCSegDataset', 'ADE20KDataset',
                 'ShapesSegDataset'):
        assert DATASETS.get(name) is not None


def test_base_seg_dataset_lists_recursively_and_by_ann_file(tmp_path):
    root = str(tmp_path)
    for stem in ('b/x2', 'a/x1', 'a/x0'):
        save(osp.join(root, 'img', stem + '.jpg'), np.zeros((4, 4, 3), np.uint8))
        save(osp.join(root, 'ann', stem + '_m.png'), np.zeros((4, 4), np.uint8))
    ds = BaseSegDataset(data_root=root, data_prefix=dict(img_path='img', seg_map_path='ann'),
                        seg_map_suffix='_m.png', metainfo=dict(classes=('a', 'b')))
    assert [d['img_id'] for d in ds] == ['x0', 'x1', 'x2']
    info = ds.get_data_info(0)
    assert info['img_path'] == osp.join(root, 'img', 'a', 'x0.jpg')
    assert info['seg_map_path'] == osp.join(root, 'ann', 'a', 'x0_m.png')
    assert info['seg_fields'] == [] and info['reduce_zero_label'] is False
    with open(osp.join(root, 'split.txt'), 'w') as f:
        f.write('b/x2\n\na/x0\n')
    ds = BaseSegDataset(data_root=root, ann_file='split.txt', seg_map_suffix='_m.png',
                        data_prefix=dict(img_path='img', seg_map_path='ann'))
    assert [d['img_id'] for d in ds] == ['x2', 'x0']
    with open(osp.join(root, 'split.txt'), 'w') as f:
        f.write('a/nope\n')
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        BaseSegDataset(data_root=root, ann_file='split.txt',
                       data_prefix=dict(img_path='img', seg_map_path='ann'))
    # images only (no seg_map_path prefix): no masks required
    ds = BaseSegDataset(data_root=root, data_prefix=dict(img_path='img'))
    assert len(ds) == 3 and 'seg_map_path' not in ds.get_data_info(0)


def test_missing_paths_name_the_path_and_the_readme(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'nowhere.*data/README.md'):
        CityscapesDataset(data_root=str(tmp_path / 'nowhere'),
                          data_prefix=dict(img_path='leftImg8bit/val',
                                           seg_map_path='gtFine/val'))
    write_cityscapes(str(tmp_path))
    missing = tmp_path / 'gtFine' / 'val' / 'bonn' / 'bonn_000002_000019_gtFine_labelTrainIds.png'
    os.remove(missing)
    with pytest.raises(FileNotFoundError) as err:
        CityscapesDataset(data_root=str(tmp_path),
                          data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'))
    assert 'bonn_000002_000019_leftImg8bit.png' in str(err.value)
    assert str(missing) in str(err.value)
    with pytest.raises(ValueError, match='ann_file'):
        VOCSegDataset(data_root=str(tmp_path))


def test_cityscapes_polygons_without_train_ids_and_the_converter(tmp_path):
    root = str(tmp_path)
    write_cityscapes(root, polygons_only=True)
    kwargs = dict(data_root=root,
                  data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'))
    with pytest.raises(FileNotFoundError, match='createTrainIdLabelImgs') as err:
        CityscapesDataset(**kwargs)
    assert 'tools/dataset_converters/cityscapes.py' in str(err.value)

    spec = importlib.util.spec_from_file_location(
        'cityscapes_converter', osp.join(REPO, 'tools', 'dataset_converters', 'cityscapes.py'))
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    converter.main([root, '--nproc', '1', '--split-lists'])
    ds = CityscapesDataset(**kwargs)
    assert len(ds) == 3
    mask = np.array(Image.open(ds.get_data_info(0)['seg_map_path']))
    assert mask.shape == (64, 128)
    assert mask[25, 40] == CITYSCAPES_CLASSES.index('car')       # inside the car polygon
    assert mask[55, 100] == CITYSCAPES_CLASSES.index('road')
    with open(osp.join(root, 'val.txt')) as f:
        assert f.read().split() == ['aachen/aachen_000000_000019', 'aachen/aachen_000001_000019',
                                    'bonn/bonn_000002_000019']


def test_label_map_for_a_class_subset(tmp_path):
    maps = write_cityscapes(str(tmp_path))
    ds = CityscapesDataset(data_root=str(tmp_path), metainfo=dict(classes=('car', 'road')),
                           data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'))
    assert ds.metainfo['classes'] == ('car', 'road')
    assert ds.metainfo['palette'] == [(0, 0, 142), (128, 64, 128)]
    label_map = ds.get_data_info(0)['label_map']
    assert label_map[13] == 0 and label_map[0] == 1
    assert all(v == 255 for k, v in label_map.items() if k not in (0, 13))
    assert len(label_map) == 19 and maps
    with pytest.raises(ValueError, match='unicorn'):
        CityscapesDataset(data_root=str(tmp_path), metainfo=dict(classes=('unicorn',)),
                          data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'))


def test_cityscapes_config_pipelines(tmp_path):
    maps = write_cityscapes(str(tmp_path), split='train')
    write_cityscapes(str(tmp_path), split='val')
    cfg = load_cfg('cityscapes.py')
    assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
    assert cfg.train_dataloader.batch_size == 2
    train = cfg.train_dataloader.dataset.copy()
    train.data_root = str(tmp_path)
    ds = DATASETS.build(train)
    assert len(ds) == 3 and ds.metainfo['classes'] == CITYSCAPES_CLASSES
    np.random.seed(0)
    out = ds[0]
    assert tuple(out['inputs'].shape) == (3, 512, 1024)
    gt = out['data_samples'].gt_sem_seg.data
    assert tuple(gt.shape) == (1, 512, 1024)
    assert set(np.unique(gt.numpy())) <= set(range(19)) | {255}

    val = cfg.val_dataloader.dataset.copy()
    val.data_root = str(tmp_path)
    out = DATASETS.build(val)[2]
    sample = out['data_samples']
    assert tuple(out['inputs'].shape) == (3, 1024, 2048)         # resized to fit (2048, 1024)
    assert sample.ori_shape == (64, 128) and sample.scale_factor == (16.0, 16.0)
    # the ground truth stays at the original size for the metric
    np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(),
                                  maps['bonn_000002_000019'])
    assert sample.seg_map_path.endswith('bonn_000002_000019_gtFine_labelTrainIds.png')


def test_voc_seg_reads_palette_pngs_and_the_aug_layout(tmp_path):
    root = tmp_path / 'VOC2012'
    rng = np.random.default_rng(0)
    palette = np.array(voc_colormap(256), np.uint8).ravel()
    masks = {}
    for i, name in enumerate(['2007_000032', '2007_000039', '2008_000001']):
        save(str(root / 'JPEGImages' / f'{name}.jpg'),
             rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
        if i == 2:
            continue                        # a detection-only image: no mask
        mask = rng.choice(np.r_[np.arange(21), 255], size=(40, 60)).astype(np.uint8)
        pil = Image.fromarray(mask, 'P')
        pil.putpalette(palette)
        for folder in ('SegmentationClass', 'SegmentationClassAug'):
            os.makedirs(root / folder, exist_ok=True)
            (pil if folder == 'SegmentationClass' else Image.fromarray(mask)).save(
                root / folder / f'{name}.png')
        masks[name] = mask
    split_dir = root / 'ImageSets' / 'Segmentation'
    os.makedirs(split_dir)
    (split_dir / 'train.txt').write_text('2007_000032\n')
    (split_dir / 'val.txt').write_text('2007_000039\n')
    (split_dir / 'train_aug.txt').write_text('2007_000032\n2007_000039\n')

    cfg = load_cfg('voc12_seg.py')
    val = cfg.val_dataloader.dataset.copy()
    val.data_root = str(root)
    ds = DATASETS.build(val)
    assert len(ds) == 1 and len(ds.metainfo['classes']) == 21
    sample = ds[0]['data_samples']
    # palette png: class indices, not colours
    np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), masks['2007_000039'])
    assert tuple(ds[0]['inputs'].shape) == (3, 512, 768)         # short side 512

    aug = cfg.voc_aug_train.copy()
    aug.data_root = str(root)
    ds = DATASETS.build(aug)
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == ['2007_000032',
                                                                    '2007_000039']
    np.random.seed(1)
    out = ds[1]
    assert tuple(out['inputs'].shape) == (3, 512, 512)
    assert set(np.unique(out['data_samples'].gt_sem_seg.data.numpy())) <= set(range(21)) | {255}


def test_ade20k_reduces_zero_label(tmp_path):
    root = tmp_path / 'ADEChallengeData2016'
    rng = np.random.default_rng(0)
    ann = rng.integers(0, 151, (30, 50)).astype(np.uint8)
    for split in ('training', 'validation'):
        save(str(root / 'images' / split / f'ADE_{split}_00000001.jpg'),
             rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
        save(str(root / 'annotations' / split / f'ADE_{split}_00000001.png'), ann)
    cfg = load_cfg('ade20k.py')
    val = cfg.val_dataloader.dataset.copy()
    val.data_root = str(root)
    ds = DATASETS.build(val)
    assert ds.metainfo['reduce_zero_label'] is True
    assert ds.get_data_info(0)['reduce_zero_label'] is True
    gt = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    expect = np.where(ann == 0, 255, ann.astype(np.int64) - 1)
    np.testing.assert_array_equal(gt, expect)
    train = cfg.train_dataloader.dataset.copy()
    train.data_root = str(root)
    out = DATASETS.build(train)[0]
    assert tuple(out['inputs'].shape) == (3, 512, 512)
    assert out['data_samples'].gt_sem_seg.data.max() <= 255
    assert set(np.unique(out['data_samples'].gt_sem_seg.data.numpy())) <= set(range(150)) | {255}


def test_shapes_seg_generates_and_trains_through_its_config(tmp_path):
    cfg = load_cfg('shapes_seg.py')
    small = dict(num_train=3, num_val=2, img_size=(64, 80))
    train = cfg.train_dataloader.dataset.copy()
    train.update(data_root=str(tmp_path), generate_cfg=small)
    ds = DATASETS.build(train)
    assert len(ds) == 3 and ds.metainfo['classes'] == SHAPES_SEG_CLASSES
    assert SHAPES_SEG_CLASSES[0] == 'background' and len(SHAPES_SEG_CLASSES) == 6
    np.random.seed(0)
    out = ds[0]
    assert tuple(out['inputs'].shape) == (3, 128, 128)
    assert set(np.unique(out['data_samples'].gt_sem_seg.data.numpy())) <= set(range(6)) | {255}
    val = cfg.val_dataloader.dataset.copy()
    val.update(data_root=str(tmp_path), generate_cfg=small)
    ds = DATASETS.build(val)
    assert len(ds) == 2
    sample = ds[1]['data_samples']
    mask = np.array(Image.open(ds.get_data_info(1)['seg_map_path']))
    np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), mask)
    assert 0 < (mask > 0).mean() < 1        # shapes on a background
    assert type(ds) is ShapesSegDataset


@pytest.mark.parametrize('name', ['cityscapes.py', 'voc12_seg.py', 'ade20k.py',
                                  'shapes_seg.py'])
def test_configs_only_name_registered_types(name):
    cfg = load_cfg(name)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert DATASETS.get(dataset.type) is not None
        for step in dataset.pipeline:
            assert TRANSFORMS.get(step['type']) is not None, step['type']
    evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
    for evaluator in evaluators:
        assert METRICS.get(evaluator['type']) is not None

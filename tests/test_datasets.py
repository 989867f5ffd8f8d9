"""COCO and VOC data sets on small annotation files written into tmp_path."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.dataset import ConcatDataset
from mmengine.registry import init_default_scope
from PIL import Image
from pycocotools.coco import COCO

from densebox.datasets import COCO_CLASSES, VOC_CLASSES, CocoDetDataset, VOCDataset
from densebox.registry import DATASETS
from densebox.structures import DetDataSample

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackDetInputs')
]


# ----------------------------------------------------------------------------- VOC fixtures
def _xml(name, objects, size=(60, 80)):
    """objects: (class name, difficult or None, (xmin, ymin, xmax, ymax) 1-based)."""
    size_xml = '' if size is None else (f'<size><width>{size[1]}</width><height>{size[0]}</height>'
                                        '<depth>3</depth></size>')
    objs = ''.join(f'<object><name>{n}</name>' +
                   ('' if d is None else f'<difficult>{d}</difficult>') + '<bndbox>' +
                   ''.join(f'<{k}>{v}</{k}>' for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), b)) +
                   '</bndbox></object>' for n, d, b in objects)
    return f'<annotation><filename>{name}.jpg</filename>{size_xml}{objs}</annotation>'


def write_voc(root, year, images, split='trainval'):
    """images: {id: (objects, size or None)}; writes xml, jpg (60 x 80) and the id list."""
    base = osp.join(root, year)
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (root / year / sub).mkdir(parents=True, exist_ok=True)
    for img_id, (objects, size) in images.items():
        with open(osp.join(base, 'Annotations', img_id + '.xml'), 'w') as f:
            f.write(_xml(img_id, objects, size))
        Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(
            osp.join(base, 'JPEGImages', img_id + '.jpg'))
    with open(osp.join(base, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
        f.write('\n'.join(images) + '\n\n')


VOC07 = {
    '000001': ([('dog', 0, (10, 20, 30, 40)), ('person', 1, (1, 1, 80, 60))], (60, 80)),
    '000002': ([], (60, 80)),                                  # no objects
    '000003': ([('car', None, (5, 6, 7, 8))], None),           # no <size>, no <difficult>
}


def test_voc_parsing(tmp_path):
    write_voc(tmp_path, 'VOC2007', VOC07)
    ds = VOCDataset(data_root=str(tmp_path), ann_file='VOC2007/ImageSets/Main/trainval.txt',
                    data_prefix=dict(sub_data_root='VOC2007/'))
    assert len(ds) == 3
    assert ds.metainfo['classes'] == VOC_CLASSES and len(ds.metainfo['palette']) == 20
    assert ds.metainfo['dataset_type'] == 'VOC'
    first = ds.get_data_info(0)
    assert first['img_id'] == '000001' and (first['height'], first['width']) == (60, 80)
    assert first['img_path'] == osp.join(str(tmp_path), 'VOC2007', 'JPEGImages', '000001.jpg')
    # 1-based inclusive -> 0-based continuous: xmin, ymin lose one
    assert [i['bbox'] for i in first['instances']] == [[9, 19, 30, 40], [0, 0, 80, 60]]
    assert [i['bbox_label'] for i in first['instances']] == [VOC_CLASSES.index('dog'),
                                                            VOC_CLASSES.index('person')]
    assert [i['ignore_flag'] for i in first['instances']] == [0, 1]
    assert ds.get_data_info(1)['instances'] == []
    third = ds.get_data_info(2)
    assert (third['height'], third['width']) == (60, 80)  # read from the image
    assert third['instances'][0]['ignore_flag'] == 0


def test_voc_filter_empty_and_pipeline(tmp_path):
    write_voc(tmp_path, 'VOC2007', VOC07)
    kwargs = dict(data_root=str(tmp_path), ann_file='VOC2007/ImageSets/Main/trainval.txt',
                  data_prefix=dict(sub_data_root='VOC2007/'), pipeline=PIPELINE)
    ds = VOCDataset(filter_cfg=dict(filter_empty_gt=True, min_size=32), **kwargs)
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == ['000001', '000003']
    with pytest.raises(ValueError, match=r'drops all 3 images \(1 have no box.*3 have a side'):
        VOCDataset(filter_cfg=dict(filter_empty_gt=True, min_size=61), **kwargs)
    assert len(VOCDataset(filter_cfg=dict(filter_empty_gt=True), test_mode=True, **kwargs)) == 3
    out = ds[0]
    sample = out['data_samples']
    assert isinstance(sample, DetDataSample) and out['inputs'].shape == (3, 60, 80)
    torch.testing.assert_close(sample.gt_instances.bboxes, torch.tensor([[9., 19., 30., 40.]]))
    torch.testing.assert_close(sample.ignored_instances.labels, torch.tensor([14]))
    assert sample.metainfo['img_id'] == '000001'


def test_voc_bad_class_name_names_file_and_name(tmp_path):
    write_voc(tmp_path, 'VOC2007',
              {'000001': ([('dog', 0, (1, 1, 5, 5)), ('dragon', 0, (1, 1, 9, 9))], (60, 80))})
    kwargs = dict(data_root=str(tmp_path), ann_file='VOC2007/ImageSets/Main/trainval.txt')
    with pytest.raises(ValueError) as err:
        VOCDataset(**kwargs)
    assert '000001.xml' in str(err.value) and "'dragon'" in str(err.value)
    ds = VOCDataset(skip_unknown_classes=True, **kwargs)
    assert len(ds.get_data_info(0)['instances']) == 1


def test_voc_class_subset(tmp_path):
    write_voc(tmp_path, 'VOC2007', VOC07)
    ds = VOCDataset(data_root=str(tmp_path), metainfo=dict(classes=['person', 'dog']),
                    skip_unknown_classes=True)
    assert ds.metainfo['classes'] == ('person', 'dog') and len(ds.metainfo['palette']) == 2
    assert [i['bbox_label'] for i in ds.get_data_info(0)['instances']] == [1, 0]
    assert ds.get_data_info(2)['instances'] == []


def test_voc_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        VOCDataset(data_root=str(tmp_path / 'VOCdevkit'))
    msg = str(err.value)
    assert osp.join('VOCdevkit', 'VOC2007', 'ImageSets', 'Main', 'trainval.txt') in msg
    assert 'data/README.md' in msg
    write_voc(tmp_path, 'VOC2007', VOC07)
    (tmp_path / 'VOC2007' / 'Annotations' / '000003.xml').unlink()
    with pytest.raises(FileNotFoundError, match='000003.xml'):
        VOCDataset(data_root=str(tmp_path))


def test_voc07_plus_12_concat(tmp_path):
    write_voc(tmp_path, 'VOC2007', VOC07)
    write_voc(tmp_path, 'VOC2012', {'2008_000001': ([('cat', 0, (2, 2, 20, 20))], (60, 80))})
    init_default_scope('densebox')
    cfg = dict(type='ConcatDataset',
               datasets=[
                   dict(type='VOCDataset',
                        data_root=str(tmp_path),
                        ann_file=f'{y}/ImageSets/Main/trainval.txt',
                        data_prefix=dict(sub_data_root=f'{y}/'),
                        pipeline=PIPELINE) for y in ('VOC2007', 'VOC2012')
               ])
    ds = DATASETS.build(cfg)
    assert isinstance(ds, ConcatDataset) and len(ds) == 4
    assert ds.metainfo['classes'] == VOC_CLASSES
    last = ds[3]['data_samples']
    assert last.metainfo['img_id'] == '2008_000001'
    assert last.gt_instances.labels.tolist() == [VOC_CLASSES.index('cat')]


# ----------------------------------------------------------------------------- COCO fixtures
def write_coco(tmp_path):
    (tmp_path / 'imgs').mkdir()
    for name in ('a.jpg', 'b.jpg', 'c.jpg'):
        Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(tmp_path / 'imgs' / name)
    data = dict(
        images=[
            dict(id=11, file_name='a.jpg', height=50, width=70),
            dict(id=5, file_name='b.jpg', height=50, width=70),
            dict(id=42, file_name='c.jpg', height=20, width=70)
        ],
        categories=[dict(id=1, name='person'),
                    dict(id=3, name='car'),
                    dict(id=7, name='train')],
        annotations=[
            dict(id=1, image_id=11, category_id=3, bbox=[10, 5, 20, 10], area=200, iscrowd=0),
            dict(id=2, image_id=11, category_id=7, bbox=[0, 0, 30, 40], area=1200, iscrowd=1),
            dict(id=3, image_id=11, category_id=1, bbox=[5, 5, 0.5, 10], area=5,
                 iscrowd=0),  # w < 1
            dict(id=4, image_id=11, category_id=1, bbox=[80, 5, 10, 10], area=100,
                 iscrowd=0),  # outside
            dict(id=5, image_id=11, category_id=1, bbox=[1.5, 2.5, 4, 6], area=24, iscrowd=0),
            dict(id=6, image_id=42, category_id=7, bbox=[3, 3, 5, 5], area=25, iscrowd=0),
        ])
    path = tmp_path / 'instances.json'
    path.write_text(json.dumps(data))
    return str(path)


def test_coco_parsing_against_pycocotools(tmp_path):
    ann = write_coco(tmp_path)
    classes = ('person', 'car', 'train')
    ds = CocoDetDataset(ann_file='instances.json', data_root=str(tmp_path),
                        data_prefix=dict(img='imgs/'), metainfo=dict(classes=classes))
    assert ds.cat_ids == [1, 3, 7] and ds.cat2label == {1: 0, 3: 1, 7: 2}
    assert ds.metainfo['cat_ids'] == [1, 3, 7]
    assert isinstance(ds.coco, COCO) and ds.ann_file == ann
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['img_id'] for i in infos] == [11, 5, 42]  # file order, COCO ids, empty image kept
    assert infos[0]['img_path'] == osp.join(str(tmp_path), 'imgs', 'a.jpg')
    assert infos[1]['instances'] == []

    oracle = COCO(ann)
    for info in infos:
        kept = []
        for a in oracle.loadAnns(oracle.getAnnIds(imgIds=[info['img_id']])):
            x, y, w, h = a['bbox']
            if w >= 1 and h >= 1 and x < info['width'] and y < info['height']:
                kept.append(dict(bbox=[x, y, x + w, y + h], ignore_flag=a['iscrowd'],
                                 bbox_label=[1, 3, 7].index(a['category_id'])))
        assert info['instances'] == kept


def test_coco_class_subset_order_and_errors(tmp_path):
    write_coco(tmp_path)
    ds = CocoDetDataset(ann_file='instances.json', data_root=str(tmp_path),
                        data_prefix=dict(img='imgs/'), metainfo=dict(classes=('train', 'person')))
    assert ds.cat_ids == [7, 1]
    labels = [[i['bbox_label'] for i in ds.get_data_info(k)['instances']] for k in range(len(ds))]
    assert labels == [[0, 1], [], [0]]  # crowd train + person; the car is dropped
    assert len(ds.metainfo['palette']) == 2

    with pytest.raises(ValueError, match="'bus'"):
        CocoDetDataset(ann_file='instances.json', data_root=str(tmp_path),
                       metainfo=dict(classes=('bus', 'car')))
    with pytest.raises(ValueError, match='person'):  # default 80 classes vs a 3-class file
        CocoDetDataset(ann_file='instances.json', data_root=str(tmp_path))


def test_coco_filter_and_pipeline(tmp_path):
    write_coco(tmp_path)
    kwargs = dict(ann_file='instances.json', data_root=str(tmp_path), data_prefix=dict(img='imgs/'),
                  metainfo=dict(classes=('person', 'car', 'train')), pipeline=PIPELINE)
    ds = CocoDetDataset(filter_cfg=dict(filter_empty_gt=True, min_size=32), **kwargs)
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == [11]
    assert len(CocoDetDataset(filter_cfg=dict(filter_empty_gt=True), **kwargs)) == 2
    sample = ds[0]['data_samples']
    torch.testing.assert_close(sample.gt_instances.labels, torch.tensor([1, 0]))
    torch.testing.assert_close(sample.ignored_instances.bboxes, torch.tensor([[0., 0., 30., 40.]]))
    torch.testing.assert_close(sample.gt_instances.bboxes[1], torch.tensor([1.5, 2.5, 5.5, 8.5]))
    with pytest.raises(KeyError, match='min_sizes'):
        CocoDetDataset(filter_cfg=dict(min_sizes=3), **kwargs)


def test_coco_defaults_and_missing_file(tmp_path):
    assert len(COCO_CLASSES) == 80 and COCO_CLASSES[0] == 'person'
    with pytest.raises(FileNotFoundError) as err:
        CocoDetDataset(ann_file='annotations/instances_val2017.json',
                       data_root=str(tmp_path / 'coco'))
    assert osp.join('coco', 'annotations', 'instances_val2017.json') in str(err.value)
    assert 'data/README.md' in str(err.value)
    (tmp_path / 'broken.json').write_text('{"images": [')
    with pytest.raises(ValueError, match='broken.json'):
        CocoDetDataset(ann_file=str(tmp_path / 'broken.json'))

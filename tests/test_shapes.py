"""The synthetic shapes generator: determinism, annotation consistency, both data set paths."""
import json
import os
import os.path as osp
import time

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from densebox.datasets import (SHAPES_CLASSES, CocoDetDataset, VOCDataset, ensure_shapes,
                               generate_shapes)

ARGS = dict(num_train=16, num_val=6, img_size=(96, 112), seed=3)


@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes(out, **ARGS)
    return out


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def test_layout(shapes_dir):
    for split, count in (('train', 16), ('val', 6)):
        assert len(os.listdir(osp.join(shapes_dir, 'images', split))) == count
        assert len(os.listdir(osp.join(shapes_dir, 'masks', split))) == count
        assert osp.isfile(osp.join(shapes_dir, 'annotations', f'instances_{split}.json'))
        ids = _read(osp.join(shapes_dir, 'VOC', 'ImageSets', 'Main',
                             f'{split}.txt')).decode().split()
        assert ids == [f'{split}_{i:06d}' for i in range(count)]
    assert len(os.listdir(osp.join(shapes_dir, 'VOC', 'JPEGImages'))) == 22
    assert len(os.listdir(osp.join(shapes_dir, 'VOC', 'Annotations'))) == 22
    assert len(SHAPES_CLASSES) >= 4


def test_deterministic(shapes_dir, tmp_path):
    again = str(tmp_path / 'again')
    generate_shapes(again, **ARGS)
    for split in ('train', 'val'):
        rel = osp.join('annotations', f'instances_{split}.json')
        assert _read(osp.join(shapes_dir, rel)) == _read(osp.join(again, rel))
        mask = osp.join('masks', split, f'{split}_000001.png')
        assert _read(osp.join(shapes_dir, mask)) == _read(osp.join(again, mask))
    other = str(tmp_path / 'other')
    generate_shapes(other, **dict(ARGS, seed=4))
    rel = osp.join('annotations', 'instances_train.json')
    assert _read(osp.join(shapes_dir, rel)) != _read(osp.join(other, rel))


def test_coco_annotations_match_masks(shapes_dir):
    coco = COCO(osp.join(shapes_dir, 'annotations', 'instances_train.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPES_CLASSES)
    counts, sizes = [], []
    for img_id in coco.getImgIds():
        info = coco.imgs[img_id]
        h, w = info['height'], info['width']
        assert (h, w) == (96, 112)
        img = np.asarray(Image.open(osp.join(shapes_dir, 'images', 'train', info['file_name'])))
        assert img.shape == (96, 112, 3)
        sem = np.asarray(Image.open(osp.join(shapes_dir, 'masks', 'train',
                                             info['file_name'].replace('.jpg', '.png'))))
        assert sem.dtype == np.uint8 and sem.shape == (h, w) and sem.max() <= len(SHAPES_CLASSES)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        counts.append(len(anns))
        union = np.zeros((h, w), np.uint8)
        for ann in anns:
            assert ann['iscrowd'] == 0
            x, y, bw, bh = ann['bbox']
            sizes.append(max(bw, bh) / min(h, w))
            inside = sem[y:y + bh, x:x + bw] == ann['category_id']
            # the box is tight around pixels of its class, touching all four sides
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:,
                                                                                          -1].any()
            assert ann['area'] <= inside.sum()
            poly = coco.annToMask(ann)
            # the polygon traces the visible pixels (contour through pixel centres)
            assert poly.sum() <= ann['area'] and (
                poly & (sem == ann['category_id'])).sum() >= 0.7 * poly.sum()
            union |= poly
        # every labelled pixel belongs to some annotated instance region
        labelled = sem > 0
        assert (union.astype(bool) & labelled).sum() >= 0.7 * labelled.sum()
    assert 1 <= min(counts) and max(counts) <= 5
    assert 0.08 <= min(sizes) and max(sizes) <= 0.65


def test_coco_and_voc_paths_agree(shapes_dir):
    coco_ds = CocoDetDataset(ann_file='annotations/instances_val.json',
                             data_root=shapes_dir,
                             data_prefix=dict(img='images/val/'),
                             metainfo=dict(classes=SHAPES_CLASSES))
    voc_ds = VOCDataset(data_root=osp.join(shapes_dir, 'VOC'), ann_file='ImageSets/Main/val.txt',
                        data_prefix=dict(sub_data_root=''), metainfo=dict(classes=SHAPES_CLASSES))
    assert len(coco_ds) == len(voc_ds) == 6
    for i in range(6):
        c, v = coco_ds.get_data_info(i), voc_ds.get_data_info(i)
        assert osp.basename(c['img_path']) == osp.basename(v['img_path'])
        assert (c['height'], c['width']) == (v['height'], v['width'])
        assert [x['bbox'] for x in c['instances']] == [x['bbox'] for x in v['instances']]
        assert [x['bbox_label']
                for x in c['instances']] == [x['bbox_label'] for x in v['instances']]
        assert _read(c['img_path']) == _read(v['img_path'])


def test_polygons_are_valid_coco(shapes_dir):
    data = json.loads(_read(osp.join(shapes_dir, 'annotations', 'instances_val.json')))
    for ann in data['annotations']:
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])
        rle = mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'], 96, 112))
        x, y, w, h = mask_utils.toBbox(rle)
        bx, by, bw, bh = ann['bbox']
        assert bx <= x and by <= y and x + w <= bx + bw and y + h <= by + bh


def test_ensure_shapes_generates_once(tmp_path):
    root = str(tmp_path / 'data' / 'shapes')
    args = dict(num_train=4, num_val=2, img_size=(64, 64), seed=0)
    ensure_shapes(root, **args)
    marker = osp.join(root, '.shapes_version')
    stamp = os.stat(osp.join(root, 'annotations', 'instances_train.json')).st_mtime_ns
    time.sleep(0.01)
    ensure_shapes(root, **args)  # up to date: nothing rewritten
    assert os.stat(osp.join(root, 'annotations', 'instances_train.json')).st_mtime_ns == stamp
    ensure_shapes(root, **dict(args, num_train=3))  # other arguments: regenerated in place
    assert len(os.listdir(osp.join(root, 'images', 'train'))) == 3
    assert json.loads(_read(marker))['num_train'] == 3
    assert not [n for n in os.listdir(root) if n.startswith('.tmp') or n == '.shapes_lock']


def test_generation_speed(tmp_path):
    start = time.process_time()
    generate_shapes(str(tmp_path / 's'), num_train=150, num_val=0, img_size=(160, 160))
    # CPU time, so that other jobs on the machine do not count; ~1000 images stay well
    # under a minute.
    assert time.process_time() - start < 6.0

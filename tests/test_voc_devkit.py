"""VOC mAP from xml files through VOCDataset and VOCMetric equals the VOC devkit's arithmetic.

The reference below is a plain re-implementation of the devkit's evaluation
(``voc_eval.py`` of py-faster-rcnn, itself a port of ``VOCevaldet.m``), run on the xml's own
numbers and on detections written as a VOC results file holds them. Boxes are small and
detections differ from the ground truth by single pixels, so a +1 counted twice changes
the result.
"""
import os.path as osp
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from densebox.datasets import VOCDataset
from densebox.evaluation import VOCMetric
from densebox.evaluation.functional import eval_voc
from densebox.ops import box_iou_np

CLASSES = ('cat', 'dog', 'car')
SIZE = (48, 64)  # (H, W)
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackDetInputs')]


# --------------------------------------------------------------------- generated VOC tree
def write_voc_tree(root, rng, num_images=24):
    """Small inclusive-pixel boxes (2..12 px), about a fifth difficult, every class present."""
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (root / 'VOC2007' / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(num_images):
        img_id = f'{i:06d}'
        ids.append(img_id)
        objects = []
        for k in range(int(rng.integers(1, 5))):
            w, h = rng.integers(2, 13, 2)
            xmin = int(rng.integers(1, SIZE[1] - w + 1))
            ymin = int(rng.integers(1, SIZE[0] - h + 1))
            name = CLASSES[(i + k) % len(CLASSES)]
            difficult = int(rng.random() < 0.2)
            objects.append(
                f'<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>'
                f'<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmin + w - 1}</xmax>'
                f'<ymax>{ymin + h - 1}</ymax></bndbox></object>')
        (root / 'VOC2007' / 'Annotations' / f'{img_id}.xml').write_text(
            f'<annotation><size><width>{SIZE[1]}</width><height>{SIZE[0]}</height>'
            f'<depth>3</depth></size>{"".join(objects)}</annotation>')
        Image.fromarray(np.zeros(SIZE + (3, ), np.uint8)).save(
            root / 'VOC2007' / 'JPEGImages' / f'{img_id}.jpg')
    (root / 'VOC2007' / 'ImageSets' / 'Main' / 'test.txt').write_text('\n'.join(ids) + '\n')
    return ids


def make_detections(gt_boxes, gt_labels, rng):
    """densebox xyxy detections: ground truth moved by -1, 0 or +1 pixel (or half pixels) per
    side, duplicates, label swaps, random boxes; scores from four values (many ties)."""
    boxes, labels = [], []
    for box, label in zip(gt_boxes, gt_labels):
        for _ in range(int(rng.integers(0, 3))):
            shift = rng.integers(-1, 2, 4).astype(np.float64)
            if rng.random() < 0.3:
                shift = shift * 0.5
            boxes.append(box + shift)
            labels.append(int(rng.integers(0, len(CLASSES))) if rng.random() < 0.1 else label)
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(0, SIZE[1] - 10), rng.uniform(0, SIZE[0] - 10)
        boxes.append(np.array([x, y, x + rng.uniform(2, 10), y + rng.uniform(2, 10)]))
        labels.append(int(rng.integers(0, len(CLASSES))))
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores = rng.choice([0.3, 0.5, 0.7, 0.9], len(labels)).astype(np.float32)
    return dict(bboxes=boxes, scores=scores, labels=np.asarray(labels, np.int64))


def densebox_samples(root, seed):
    """VOCDataset's packed samples (its ground truth) with generated predictions attached."""
    import torch
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(seed)
    write_voc_tree(root, rng)
    ds = VOCDataset(data_root=str(root), ann_file='VOC2007/ImageSets/Main/test.txt',
                    data_prefix=dict(sub_data_root='VOC2007/'), metainfo=dict(classes=CLASSES),
                    test_mode=True, pipeline=PIPELINE)
    samples, predictions = [], {}
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        gt = sample.gt_instances
        every_box = torch.cat([gt.bboxes, sample.ignored_instances.bboxes]).numpy()
        every_label = torch.cat([gt.labels, sample.ignored_instances.labels]).numpy()
        pred = make_detections(every_box, every_label, rng)
        sample.pred_instances = InstanceData(**{k: torch.from_numpy(v) for k, v in pred.items()})
        samples.append(sample.to_dict())
        predictions[sample.img_id] = pred
    return ds.metainfo, samples, predictions


# --------------------------------------------------------------------- devkit reference
def read_xml_objects(xml_path):
    """The devkit's parse_rec: class, difficult and the <bndbox> integers as written."""
    objects = []
    for obj in ET.parse(xml_path).findall('object'):
        box = [int(obj.find('bndbox').find(k).text) for k in ('xmin', 'ymin', 'xmax', 'ymax')]
        objects.append(dict(name=obj.find('name').text, difficult=int(obj.find('difficult').text),
                            bbox=box))
    return objects


def voc_results_file(predictions):
    """Lines of the devkit's per-class results files: image id, score, xmin ymin xmax ymax in
    VOC's 1-based inclusive pixels (a densebox box [x1, y1, x2, y2] covers the pixels
    x1 + 1 .. x2 in VOC's numbering)."""
    lines = {c: [] for c in CLASSES}
    for img_id, pred in predictions.items():  # image order, then detection order
        for (x1, y1, x2, y2), score, label in zip(pred['bboxes'].tolist(), pred['scores'],
                                                  pred['labels']):
            lines[CLASSES[label]].append((img_id, float(score), [x1 + 1, y1 + 1, x2, y2]))
    return lines


def devkit_ap(rec, prec, use_07_metric):
    if use_07_metric:  # 11 points: mean of the best precision at recall >= 0, 0.1, ..., 1
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ap += (np.max(prec[rec >= t]) if np.sum(rec >= t) else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def devkit_class_ap(xml_dir, img_ids, detections, classname, ovthresh, use_07_metric):
    """voc_eval(): the devkit's matching for one class."""
    class_recs, npos = {}, 0
    for img_id in img_ids:
        objs = [o for o in read_xml_objects(osp.join(xml_dir, img_id + '.xml'))
                if o['name'] == classname]
        difficult = np.array([o['difficult'] for o in objs]).astype(bool)
        class_recs[img_id] = dict(bbox=np.array([o['bbox'] for o in objs], float).reshape(-1, 4),
                                  difficult=difficult, det=[False] * len(objs))
        npos += int((~difficult).sum())
    confidence = np.array([d[1] for d in detections])
    boxes = np.array([d[2] for d in detections], float).reshape(-1, 4)
    # VOCevaldet.m's sort is stable (equal scores keep the results file's order); voc_eval.py's
    # np.argsort(-confidence) is not guaranteed to be.
    order = np.argsort(-confidence, kind='stable')
    image_ids = [detections[k][0] for k in order]
    boxes = boxes[order]
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d in range(len(order)):
        rec = class_recs[image_ids[d]]
        bb, bbgt = boxes[d], rec['bbox']
        ovmax = -np.inf
        if bbgt.size > 0:
            ixmin = np.maximum(bbgt[:, 0], bb[0])
            iymin = np.maximum(bbgt[:, 1], bb[1])
            ixmax = np.minimum(bbgt[:, 2], bb[2])
            iymax = np.minimum(bbgt[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                   + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0) - inters)
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), int(np.argmax(overlaps))
        # VOCevaldet.m: ovmax >= minoverlap (voc_eval.py writes '>': they differ only for an
        # IoU exactly at the threshold)
        if ovmax >= ovthresh:
            if not rec['difficult'][jmax]:
                if not rec['det'][jmax]:
                    tp[d] = 1.0
                    rec['det'][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return devkit_ap(rec, prec, use_07_metric)


def devkit_map(root, img_ids, predictions, ovthresh, use_07_metric):
    xml_dir = osp.join(root, 'VOC2007', 'Annotations')
    results = voc_results_file(predictions)
    return float(np.mean([devkit_class_ap(xml_dir, img_ids, results[c], c, ovthresh,
                                          use_07_metric) for c in CLASSES]))


# --------------------------------------------------------------------- tests
def run_voc_metric(meta, samples, mode, thrs=(0.5, 0.7)):
    metric = VOCMetric(iou_thr=list(thrs), eval_mode=mode)
    metric.dataset_meta = meta
    metric.process({}, samples)
    return metric.evaluate(len(samples))


@pytest.mark.parametrize('mode', ['11points', 'area'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_voc_metric_equals_devkit_on_xml_files(tmp_path, mode, seed):
    meta, samples, predictions = densebox_samples(tmp_path, seed)
    img_ids = list(predictions)
    # the cases exercise what the devkit is particular about
    assert sum(len(s['ignored_instances']['labels']) for s in samples) > 0  # difficult boxes
    scores = np.concatenate([p['scores'] for p in predictions.values()])
    assert len(np.unique(scores)) < len(scores) // 4                       # many score ties
    out = run_voc_metric(meta, samples, mode)
    for thr, key in ((0.5, 'AP50'), (0.7, 'AP70')):
        ref = devkit_map(tmp_path, img_ids, predictions, thr, mode == '11points')
        assert out[f'pascal_voc/{key}'] == pytest.approx(ref, abs=1e-12)
        assert 0.05 < ref < 0.95

    # The old arithmetic (+1 widths on boxes already widened by the parser) is measurably off
    # on these one-pixel cases, so the test above would catch it.
    gts = [dict(bboxes=np.concatenate([s['gt_instances']['bboxes'].numpy(),
                                       s['ignored_instances']['bboxes'].numpy()]),
                labels=np.concatenate([s['gt_instances']['labels'].numpy(),
                                       s['ignored_instances']['labels'].numpy()]),
                difficult=np.r_[np.zeros(len(s['gt_instances']['labels']), bool),
                                np.ones(len(s['ignored_instances']['labels']), bool)])
           for s in samples]
    double = eval_voc(list(predictions.values()), gts, len(CLASSES), 0.5, mode,
                      legacy_coordinate=True)
    ref = devkit_map(tmp_path, img_ids, predictions, 0.5, mode == '11points')
    assert abs(float(np.nanmean(double['ap'])) - ref) > 0.01


def test_voc_boxes_round_trip_to_the_xml_numbers(tmp_path):
    """Parsing then writing back as VOC pixels gives the xml's integers exactly, and the
    devkit's inclusive width equals the box's continuous width."""
    from densebox.datasets.voc import voc_box_to_xyxy, xyxy_to_voc_box
    rng = np.random.default_rng(7)
    ids = write_voc_tree(tmp_path, rng, num_images=4)
    ds = VOCDataset(data_root=str(tmp_path), ann_file='VOC2007/ImageSets/Main/test.txt',
                    metainfo=dict(classes=CLASSES), test_mode=True)
    for i, img_id in enumerate(ids):
        xml = read_xml_objects(osp.join(tmp_path, 'VOC2007', 'Annotations', img_id + '.xml'))
        boxes = np.array([inst['bbox'] for inst in ds.get_data_info(i)['instances']])
        np.testing.assert_array_equal(xyxy_to_voc_box(boxes), [o['bbox'] for o in xml])
        inclusive_w = np.array([o['bbox'][2] - o['bbox'][0] + 1 for o in xml])
        np.testing.assert_array_equal(boxes[:, 2] - boxes[:, 0], inclusive_w)
    assert voc_box_to_xyxy(1, 1, 3, 3) == [0.0, 0.0, 3.0, 3.0]  # 3 x 3 pixels


def test_one_pixel_boxes_match_as_the_devkit_says():
    """A 2x2-pixel ground truth (VOC 1..2) and a detection one pixel wider (VOC 1..3): devkit
    IoU 4/6 = 0.667 (a TP at 0.5 and 0.6, an FP at 0.7); with the +1 counted twice it
    would be 9/12 = 0.75."""
    gt = np.array([[0, 0, 2, 2]], np.float32)  # densebox xyxy of <bndbox> 1 1 2 2
    det = np.array([[0, 0, 3, 2]], np.float32)  # VOC 1 1 3 2
    sample = dict(img_id=0, gt_instances=dict(bboxes=gt, labels=np.zeros(1, np.int64)),
                  pred_instances=dict(bboxes=det, scores=np.ones(1, np.float32),
                                      labels=np.zeros(1, np.int64)))
    out = run_voc_metric(dict(classes=('a', )), [sample], 'area', thrs=(0.5, 0.6, 0.7))
    assert (out['pascal_voc/AP50'], out['pascal_voc/AP60'], out['pascal_voc/AP70']) == \
        (1.0, 1.0, 0.0)
    assert box_iou_np(gt + [1, 1, 0, 0], det + [1, 1, 0, 0], offset=1)[0, 0] == \
        pytest.approx(4 / 6)

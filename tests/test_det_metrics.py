"""VOCMetric / CocoMetric against plainly written references and pycocotools."""
import contextlib
import io
import json
import sys

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData
from torchvision.ops import box_iou

from densebox.evaluation import CocoMetric, VOCMetric
from densebox.evaluation.functional import eval_voc, voc_ap
from densebox.ops import box_iou_np
from densebox.registry import METRICS
from densebox.structures import DetDataSample

CLASSES = ('cat', 'dog', 'car', 'bus')
CAT_IDS = (1, 3, 7, 10)  # non-contiguous, as in COCO


# ---------------------------------------------------------------- random data
def _random_boxes(rng, n, size=260.0):
    """(n, 4) xyxy boxes spanning COCO's small, medium and large area ranges."""
    xy = rng.uniform(0, size * 0.6, (n, 2))
    wh = rng.uniform(4, size * 0.55, (n, 2))
    return np.round(np.concatenate([xy, xy + wh], axis=1), 1).astype(np.float32)


def make_dataset(seed=0, num_images=12, num_classes=len(CLASSES)):
    """Per image: gt (normal), ignored (difficult / crowd), predictions.

    Image 0 has no ground truth (only false positives), image 1 no predictions, the rest a
    mix of jittered true positives, duplicates, label swaps and random false positives.
    """
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        n_gt = 0 if i == 0 else int(rng.integers(1, 6))
        n_ign = int(rng.integers(0, 3)) if i > 1 else 0
        gt_boxes = _random_boxes(rng, n_gt)
        gt_labels = rng.integers(0, num_classes, n_gt)
        ign_boxes = _random_boxes(rng, n_ign)
        ign_labels = rng.integers(0, num_classes, n_ign)

        all_boxes = np.concatenate([gt_boxes, ign_boxes])
        all_labels = np.concatenate([gt_labels, ign_labels])
        pred_boxes, pred_labels = [], []
        if i != 1:
            for box, label in zip(all_boxes, all_labels):
                for _ in range(int(rng.integers(0, 3))):  # 0 (miss), 1 or 2 (duplicate)
                    jitter = rng.normal(0, 0.08, 4) * np.r_[box[2:] - box[:2], box[2:] - box[:2]]
                    pred_boxes.append(box + jitter)
                    swap = rng.random() < 0.15
                    pred_labels.append(rng.integers(0, num_classes) if swap else label)
            n_fp = int(rng.integers(0, 4))
            pred_boxes.extend(_random_boxes(rng, n_fp))
            pred_labels.extend(rng.integers(0, num_classes, n_fp))
        pred_boxes = np.asarray(pred_boxes, np.float32).reshape(-1, 4)
        pred_boxes[:, 2:] = np.maximum(pred_boxes[:, 2:], pred_boxes[:, :2] + 1)
        pred_labels = np.asarray(pred_labels, np.int64)
        scores = rng.random(len(pred_labels)).astype(np.float32)
        images.append(dict(
            img_id=100 + i, ori_shape=(240, 260),
            gt=dict(bboxes=gt_boxes, labels=gt_labels.astype(np.int64)),
            ignored=dict(bboxes=ign_boxes, labels=ign_labels.astype(np.int64)),
            pred=dict(bboxes=pred_boxes, labels=pred_labels, scores=scores)))
    return images


def to_sample_dict(img):
    """What mmengine's Evaluator hands a metric (DetDataSample.to_dict())."""
    def inst(d):
        return {k: torch.as_tensor(v) for k, v in d.items()}
    return dict(img_id=img['img_id'], ori_shape=img['ori_shape'], gt_instances=inst(img['gt']),
                ignored_instances=inst(img['ignored']), pred_instances=inst(img['pred']))


def run_metric(metric, images, classes=CLASSES, cat_ids=None):
    meta = dict(classes=classes)
    if cat_ids is not None:
        meta['cat_ids'] = cat_ids
    metric.dataset_meta = meta
    metric.process({}, [to_sample_dict(img) for img in images])
    return metric.evaluate(len(images))


# ---------------------------------------------------------------- VOC reference
def ref_voc_ap(rec, prec, mode):
    """VOC devkit AP, written with loops."""
    if mode == '11points':
        ap = 0.0
        for t in [i * 0.1 for i in range(11)]:  # 0:0.1:1 in floating point
            p = [pr for r, pr in zip(rec, prec) if r >= t]
            ap += (max(p) if p else 0.0) / 11
        return ap
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def ref_voc_class_ap(images, cls, thr, mode, legacy):
    """Classic VOCevaldet: rank detections, take the max-overlap GT, difficult ignored."""
    extra = 1.0 if legacy else 0.0
    gts, npos = {}, 0
    for img in images:
        boxes = [(b, False) for b, l in zip(img['gt']['bboxes'], img['gt']['labels']) if l == cls]
        boxes += [(b, True) for b, l in zip(img['ignored']['bboxes'], img['ignored']['labels'])
                  if l == cls]
        gts[img['img_id']] = dict(boxes=boxes, det=[False] * len(boxes))
        npos += sum(1 for _, d in boxes if not d)
    dets = []
    for img in images:
        p = img['pred']
        for b, s, l in zip(p['bboxes'], p['scores'], p['labels']):
            if l == cls:
                dets.append((float(s), img['img_id'], b))
    dets.sort(key=lambda d: -d[0])  # stable
    tp, fp = [], []
    for _, img_id, b in dets:
        g = gts[img_id]
        ovmax, jmax = -np.inf, -1
        for j, (gb, _) in enumerate(g['boxes']):
            iw = min(b[2], gb[2]) - max(b[0], gb[0]) + extra
            ih = min(b[3], gb[3]) - max(b[1], gb[1]) + extra
            if iw > 0 and ih > 0:
                ua = ((b[2] - b[0] + extra) * (b[3] - b[1] + extra)
                      + (gb[2] - gb[0] + extra) * (gb[3] - gb[1] + extra) - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= thr:
            if g['boxes'][jmax][1]:
                tp.append(0)
                fp.append(0)
            elif not g['det'][jmax]:
                g['det'][jmax] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    if npos == 0:
        return None
    ctp, cfp, rec, prec = 0, 0, [], []
    for t, f in zip(tp, fp):
        ctp += t
        cfp += f
        rec.append(ctp / npos)
        prec.append(ctp / max(ctp + cfp, np.finfo(np.float64).eps))
    return ref_voc_ap(rec, prec, mode)


def ref_voc_map(images, thr, mode, legacy=True):
    aps = [ref_voc_class_ap(images, c, thr, mode, legacy) for c in range(len(CLASSES))]
    aps = [a for a in aps if a is not None]
    return float(np.mean(aps)), aps


# ---------------------------------------------------------------- VOC tests
def test_box_iou_np_matches_torchvision():
    rng = np.random.default_rng(3)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
    ref = box_iou(torch.from_numpy(a).double(), torch.from_numpy(b).double()).numpy()
    np.testing.assert_allclose(box_iou_np(a, b), ref, rtol=1e-10)
    # inclusive pixels == continuous IoU of boxes grown by one pixel at the far corner
    grow = np.array([0, 0, 1, 1], np.float32)
    ref_legacy = box_iou(torch.from_numpy(a + grow).double(),
                         torch.from_numpy(b + grow).double()).numpy()
    np.testing.assert_allclose(box_iou_np(a, b, offset=1), ref_legacy,
                               rtol=1e-10)
    assert box_iou_np(a, np.zeros((0, 4))).shape == (7, 0)
    assert box_iou_np(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0  # no 0 / 0


@pytest.mark.parametrize('mode', ['11points', 'area'])
def test_voc_ap_function_matches_reference(mode):
    rng = np.random.default_rng(4)
    for _ in range(20):
        hits = rng.random(15) < 0.5
        npos = hits.sum() + int(rng.integers(0, 3)) or 1
        rec = np.cumsum(hits) / npos
        prec = np.cumsum(hits) / np.arange(1, 16)
        assert voc_ap(rec, prec, mode) == pytest.approx(ref_voc_ap(rec, prec, mode), abs=1e-12)
    assert voc_ap(np.zeros(0), np.zeros(0), mode) == 0.0


@pytest.mark.parametrize('mode', ['11points', 'area'])
@pytest.mark.parametrize('seed', [0, 1])
def test_voc_metric_matches_devkit_reference(mode, seed):
    images = make_dataset(seed)
    # the generator must actually exercise difficult boxes, duplicates and empty images
    assert sum(len(img['ignored']['labels']) for img in images) > 0
    assert len(images[0]['gt']['labels']) == 0 and len(images[1]['pred']['labels']) == 0
    # boxes taken as inclusive pixels: the devkit arithmetic itself (test_voc_devkit.py
    # checks the whole VOCDataset -> VOCMetric chain on xml files)
    metric = VOCMetric(iou_thr=[0.5, 0.75], eval_mode=mode, box_convention='voc_inclusive')
    out = run_metric(metric, images)
    for thr, key in ((0.5, 'AP50'), (0.75, 'AP75')):
        ref, _ = ref_voc_map(images, thr, mode)
        assert out[f'pascal_voc/{key}'] == pytest.approx(ref, abs=1e-10)
    assert out['pascal_voc/mAP'] == pytest.approx(
        (out['pascal_voc/AP50'] + out['pascal_voc/AP75']) / 2)
    assert 0.05 < out['pascal_voc/AP50'] < 0.999  # a non-trivial case


def _as_voc_pixels(images):
    """The same data with every box written as VOC inclusive pixels: [x1 + 1, y1 + 1, x2, y2]."""
    out = []
    for img in images:
        img = {k: (dict(v) if isinstance(v, dict) else v) for k, v in img.items()}
        for key in ('gt', 'ignored', 'pred'):
            img[key]['bboxes'] = img[key]['bboxes'] + np.float32([1, 1, 0, 0])
        out.append(img)
    return out


def test_voc_metric_xyxy_boxes_are_measured_as_voc_pixels():
    images = make_dataset(5)
    out = run_metric(VOCMetric(eval_mode='area'), images)  # box_convention='xyxy'
    ref, _ = ref_voc_map(_as_voc_pixels(images), 0.5, 'area', legacy=True)
    assert out['pascal_voc/AP50'] == pytest.approx(ref, abs=1e-10)
    # ... which is continuous-coordinate IoU on the xyxy boxes
    assert ref == pytest.approx(ref_voc_map(images, 0.5, 'area', legacy=False)[0], abs=1e-10)


def _one_image(gt, preds, difficult=(), num_classes=1):
    """gt / difficult: lists of boxes of class 0; preds: list of (box, score)."""
    return dict(img_id=0, ori_shape=(100, 100),
                gt=dict(bboxes=np.asarray(gt, np.float32).reshape(-1, 4),
                        labels=np.zeros(len(gt), np.int64)),
                ignored=dict(bboxes=np.asarray(difficult, np.float32).reshape(-1, 4),
                             labels=np.zeros(len(difficult), np.int64)),
                pred=dict(bboxes=np.asarray([p[0] for p in preds], np.float32).reshape(-1, 4),
                          scores=np.asarray([p[1] for p in preds], np.float32),
                          labels=np.zeros(len(preds), np.int64)))


def _voc(images, mode, **kwargs):
    return run_metric(VOCMetric(eval_mode=mode, **kwargs), images, classes=('a',))


A, B = [10, 10, 50, 50], [60, 60, 90, 90]
FAR = [0, 70, 20, 95]


@pytest.mark.parametrize('mode', ['11points', 'area'])
def test_voc_hand_cases(mode):
    # one perfect detection
    assert _voc([_one_image([A], [(A, 0.9)])], mode)['pascal_voc/mAP'] == pytest.approx(1.0)
    # a false positive ranked above the only true positive: precision 1/2 at recall 1
    assert _voc([_one_image([A], [(FAR, 0.9), (A, 0.8)])], mode)['pascal_voc/mAP'] == \
        pytest.approx(0.5)
    # a duplicate is a false positive; ranked below the TP it does not lower AP
    assert _voc([_one_image([A], [(A, 0.9), (A, 0.8)])], mode)['pascal_voc/mAP'] == \
        pytest.approx(1.0)
    # TP, FP, TP over two GT: rec (.5, .5, 1), prec (1, .5, 2/3)
    expected = 0.5 + 0.5 * 2 / 3 if mode == 'area' else (6 + 5 * 2 / 3) / 11
    out = _voc([_one_image([A, B], [(A, 0.9), (FAR, 0.8), (B, 0.7)])], mode)
    assert out['pascal_voc/mAP'] == pytest.approx(expected)
    # a detection on a difficult box is neither TP nor FP
    out = _voc([_one_image([A], [(B, 0.95), (A, 0.9)], difficult=[B])], mode)
    assert out['pascal_voc/mAP'] == pytest.approx(1.0)
    # ... and a missed difficult box costs no recall
    out = _voc([_one_image([A], [(A, 0.9)], difficult=[B])], mode)
    assert out['pascal_voc/mAP'] == pytest.approx(1.0)


def test_voc_box_convention_changes_matching():
    # inclusive pixels: 10*5 / 100 = 0.5 -> TP; pixel edges (xyxy): 9*4 / 81 = 0.44 -> FP
    images = [_one_image([[0, 0, 9, 9]], [([0, 0, 9, 4], 0.9)])]
    assert _voc(images, 'area', box_convention='voc_inclusive')['pascal_voc/mAP'] == \
        pytest.approx(1.0)
    assert _voc(images, 'area')['pascal_voc/mAP'] == 0.0
    with pytest.raises(ValueError, match='box_convention'):
        VOCMetric(box_convention='legacy')


def test_voc_classes_without_gt_are_left_out_of_the_mean():
    img = _one_image([A], [(A, 0.9)])
    img['pred']['labels'] = np.array([0], np.int64)
    out = run_metric(VOCMetric(), [img], classes=('a', 'b'))  # class 'b' has no GT
    assert out['pascal_voc/mAP'] == pytest.approx(1.0)
    res = eval_voc([img['pred']], [dict(img['gt'])], 2)
    assert np.isnan(res['ap'][0, 1]) and res['num_gts'].tolist() == [1, 0]


def test_voc_bad_input_raises():
    with pytest.raises(ValueError, match='eval_mode'):
        VOCMetric(eval_mode='12points')
    img = _one_image([A], [(A, 0.9)])
    img['pred']['labels'] = np.array([3], np.int64)
    with pytest.raises(ValueError, match='label 3'):
        run_metric(VOCMetric(), [img], classes=('a',))


def test_voc_through_mmengine_evaluator_and_registry():
    images = make_dataset(2, num_images=4)
    metric = METRICS.build(dict(type='VOCMetric', eval_mode='area',
                                box_convention='voc_inclusive'))
    evaluator = Evaluator(metric)
    evaluator.dataset_meta = dict(classes=CLASSES)
    samples = []
    for img in images:
        s = DetDataSample(metainfo=dict(img_id=img['img_id'], ori_shape=img['ori_shape']))
        s.gt_instances = InstanceData(**{k: torch.as_tensor(v) for k, v in img['gt'].items()})
        s.ignored_instances = InstanceData(
            **{k: torch.as_tensor(v) for k, v in img['ignored'].items()})
        s.pred_instances = InstanceData(**{k: torch.as_tensor(v) for k, v in img['pred'].items()})
        samples.append(s)
    evaluator.process(samples)
    out = evaluator.evaluate(len(samples))
    assert out['pascal_voc/AP50'] == pytest.approx(ref_voc_map(images, 0.5, 'area')[0])


# ---------------------------------------------------------------- COCO
def write_coco_gt(images, path):
    """COCO json of the random data set; ignored boxes become iscrowd=1."""
    anns = []
    for img in images:
        for key, crowd in (('gt', 0), ('ignored', 1)):
            for box, label in zip(img[key]['bboxes'].tolist(), img[key]['labels'].tolist()):
                w, h = box[2] - box[0], box[3] - box[1]
                anns.append(dict(id=len(anns) + 1, image_id=img['img_id'],
                                 category_id=CAT_IDS[label], bbox=[box[0], box[1], w, h],
                                 area=w * h, iscrowd=crowd))
    data = dict(images=[dict(id=img['img_id'], height=img['ori_shape'][0],
                             width=img['ori_shape'][1], file_name=f"{img['img_id']}.jpg")
                        for img in images],
                annotations=anns,
                # listed out of id order: the mapping must go by name
                categories=[dict(id=c, name=n) for c, n in reversed(list(zip(CAT_IDS, CLASSES)))])
    path.write_text(json.dumps(data))
    return str(path)


def reference_cocoeval(gt_path, images):
    """pycocotools run directly on the json files (the oracle)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    dets = []
    for img in images:
        p = img['pred']
        for box, s, l in zip(p['bboxes'].tolist(), p['scores'].tolist(), p['labels'].tolist()):
            dets.append(dict(image_id=img['img_id'], category_id=CAT_IDS[l], score=s,
                             bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]]))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:6]


KEYS = ['bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l']


@pytest.fixture(scope='module')
def coco_case(tmp_path_factory):
    images = make_dataset(7, num_images=10)
    gt_path = write_coco_gt(images, tmp_path_factory.mktemp('coco') / 'gt.json')
    return images, gt_path, reference_cocoeval(gt_path, images)


def test_coco_metric_matches_pycocotools(coco_case):
    images, gt_path, ref = coco_case
    out = run_metric(CocoMetric(ann_file=gt_path), images)
    got = [out[f'coco/{k}'] for k in KEYS]
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert 0.05 < out['coco/bbox_mAP'] < 0.99


def test_coco_metric_gt_from_samples_matches_pycocotools(coco_case):
    images, _, ref = coco_case
    out = run_metric(CocoMetric(ann_file=None), images)
    np.testing.assert_allclose([out[f'coco/{k}'] for k in KEYS], ref, atol=1e-12)


def test_coco_metric_dataset_cat_ids(coco_case):
    images, gt_path, ref = coco_case
    out = run_metric(CocoMetric(ann_file=gt_path, classwise=False), images, cat_ids=CAT_IDS)
    np.testing.assert_allclose([out[f'coco/{k}'] for k in KEYS], ref, atol=1e-12)


def test_faster_coco_eval_equals_pycocotools(coco_case):
    images, gt_path, ref = coco_case
    fast = run_metric(CocoMetric(ann_file=gt_path, backend='faster_coco_eval'), images)
    np.testing.assert_allclose([fast[f'coco/{k}'] for k in KEYS], ref, atol=1e-9)
    fast_no_file = run_metric(CocoMetric(backend='faster_coco_eval'), images)
    np.testing.assert_allclose([fast_no_file[f'coco/{k}'] for k in KEYS], ref, atol=1e-9)


@pytest.mark.parametrize('backend', ['pycocotools', 'faster_coco_eval'])
def test_coco_metric_empty_predictions(coco_case, backend):
    images, gt_path, _ = coco_case
    empty = [dict(img, pred=dict(bboxes=np.zeros((0, 4), np.float32),
                                 labels=np.zeros(0, np.int64), scores=np.zeros(0, np.float32)))
             for img in images]
    for ann_file in (gt_path, None):
        out = run_metric(CocoMetric(ann_file=ann_file, backend=backend), empty)
        assert out['coco/bbox_mAP'] == 0.0 and out['coco/bbox_mAP_50'] == 0.0


def test_coco_metric_subset_of_images(coco_case):
    """Evaluating part of the ann_file's images scores only those images."""
    images, gt_path, _ = coco_case
    part = images[:5]
    out = run_metric(CocoMetric(ann_file=gt_path), part)
    ref = run_metric(CocoMetric(ann_file=None), part)
    np.testing.assert_allclose([out[f'coco/{k}'] for k in KEYS],
                               [ref[f'coco/{k}'] for k in KEYS], atol=1e-12)


def test_coco_format_only_writes_results(coco_case, tmp_path):
    images, gt_path, _ = coco_case
    prefix = tmp_path / 'sub' / 'results'
    out = run_metric(CocoMetric(ann_file=gt_path, format_only=True, outfile_prefix=str(prefix)),
                     images)
    assert out == {}
    dets = json.loads((tmp_path / 'sub' / 'results.bbox.json').read_text())
    assert len(dets) == sum(len(img['pred']['labels']) for img in images)
    first = next(img for img in images if len(img['pred']['labels']))
    box = first['pred']['bboxes'][0]
    assert dets[0]['image_id'] == first['img_id']
    assert dets[0]['category_id'] == CAT_IDS[first['pred']['labels'][0]]
    np.testing.assert_allclose(dets[0]['bbox'], [box[0], box[1], box[2] - box[0],
                                                 box[3] - box[1]], rtol=1e-6)


def test_coco_bad_input_raises(coco_case, tmp_path):
    images, gt_path, _ = coco_case
    with pytest.raises(FileNotFoundError, match='missing.json'):
        CocoMetric(ann_file=str(tmp_path / 'missing.json'))
    with pytest.raises(ValueError, match='outfile_prefix'):
        CocoMetric(format_only=True)
    with pytest.raises(ValueError, match='backend'):
        CocoMetric(backend='detectron')
    with pytest.raises(ValueError, match='truck'):
        run_metric(CocoMetric(ann_file=gt_path), images, classes=CLASSES + ('truck',))


def test_coco_classwise_ap_agrees_with_cocoeval(coco_case):
    """Per-class APs from eval['precision'] average to COCOeval's own AP / AP50 / AP75."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    images, gt_path, ref = coco_case
    dets = [dict(image_id=img['img_id'], category_id=CAT_IDS[l], score=s,
                 bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]])
            for img in images
            for b, s, l in zip(img['pred']['bboxes'].tolist(), img['pred']['scores'].tolist(),
                               img['pred']['labels'].tolist())]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
        ev.params.catIds = list(CAT_IDS)
        ev.evaluate()
        ev.accumulate()
    table = CocoMetric.classwise_ap(ev.eval['precision'])
    assert table.shape == (len(CLASSES), 3) and not np.isnan(table).any()
    np.testing.assert_allclose(table.mean(axis=0), ref[:3], atol=1e-12)
    # a class with no ground truth and no detections gives nan, not 0
    fake = np.concatenate([ev.eval['precision'], -np.ones_like(ev.eval['precision'][:, :, :1])],
                          axis=2)
    assert np.isnan(CocoMetric.classwise_ap(fake)[-1]).all()


# ---------------------------------------------------------------- COCO backends
def test_coco_metric_default_backend_is_faster_coco_eval_when_installed(monkeypatch):
    pytest.importorskip('faster_coco_eval', reason='faster-coco-eval is in the [test] extra')
    assert CocoMetric().backend == 'faster_coco_eval'
    monkeypatch.setitem(sys.modules, 'faster_coco_eval', None)  # as if not installed
    metric = CocoMetric()
    assert metric.backend == 'pycocotools'
    from pycocotools.cocoeval import COCOeval
    assert metric.eval_cls is COCOeval


@pytest.fixture(scope='module')
def coco_val_like(tmp_path_factory):
    """A COCO-like generated set: 80 categories, 100 images x 100 detections."""
    from densebox.benchmark.coco_eval import make_coco_case, write_gt
    gt, preds = make_coco_case(num_images=100, dets_per_image=100, seed=3)
    return gt, preds, write_gt(gt, tmp_path_factory.mktemp('coco_val') / 'gt.json')


def test_default_coco_metric_identical_to_pycocotools(coco_val_like):
    """The default backend's 12 summary numbers equal plain pycocotools' run on the results
    list (the oracle), not just to 4 decimals."""
    from densebox.benchmark.coco_eval import eval_densebox, eval_pycocotools
    gt, preds, path = coco_val_like
    cat_ids = [c['id'] for c in gt['categories']]
    ref = eval_pycocotools(path, preds, cat_ids)
    assert 0.05 < ref[0] < 0.9 and (ref > 0).all()  # a non-trivial case: every stat scored
    classes = [c['name'] for c in gt['categories']]
    np.testing.assert_allclose(eval_densebox(path, preds, classes), ref, rtol=0, atol=1e-12)


def test_detection_annotations_equal_what_load_res_makes(coco_val_like):
    """CocoMetric skips loadRes: the annotations it builds must be loadRes' own (minus the
    box polygons bbox evaluation never reads)."""
    from pycocotools.coco import COCO
    gt, preds, path = coco_val_like
    metric = CocoMetric(ann_file=path, backend='pycocotools')
    metric.dataset_meta = dict(classes=tuple(c['name'] for c in gt['categories']))
    metric.process(None, [dict(img_id=i, pred_instances=dict(bboxes=b, scores=s, labels=l))
                          for i, b, s, l in preds[:20]])
    cat_ids = np.asarray([c['id'] for c in gt['categories']])
    ours = metric._detection_annotations(metric.results, cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = COCO(path).loadRes(metric._results_json(metric.results, cat_ids))
    expected = [{k: v for k, v in a.items() if k != 'segmentation'}
                for a in theirs.dataset['annotations']]
    assert len(ours) == 2000 and ours == expected

"""Property-based tests (hypothesis): geometric transforms keep boxes on the image and on
their objects and masks aligned with images; box encode / decode round trip; NMS equals a
plain greedy loop; detection and segmentation metrics do not depend on prediction order.

The images used for the transforms carry their own source coordinates: channel 0 is the
row and channel 1 the column of the original pixel, channel 2 is 0 on original pixels (and
the fill value where a transform adds canvas). The mask holds ``row * 1000 + col``. After
any chain of transforms, each image pixel says where it came from, and so must its mask
pixel and every box covering it.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densebox.datasets.transforms import (Albu, Expand, MinIoURandomCrop, RandomCrop,
                                          RandomFlip, RandomResize, Resize, SegPad)
from densebox.evaluation import CocoMetric, IoUMetric, VOCMetric
from densebox.models.det_heads.box_coder import DeltaXYWHBoxCoder
from densebox.ops import nms

FAST = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
FILL = 255  # canvas added by Expand / SegPad: every channel 255, mask 255


# --------------------------------------------------------------------------- samples
@st.composite
def samples(draw, max_side=90):
    """A results dict: coordinate-coded image (H, W, 3), its mask (H, W) int32, and up to 5
    boxes inside the image, labelled with their index."""
    h = draw(st.integers(4, max_side))
    w = draw(st.integers(4, max_side))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    img = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    seg = (rows * 1000 + cols).astype(np.int32)
    boxes = []
    for _ in range(draw(st.integers(0, 5))):
        x1 = draw(st.floats(0, w - 2, allow_nan=False))
        y1 = draw(st.floats(0, h - 2, allow_nan=False))
        x2 = draw(st.floats(x1 + 1, w, allow_nan=False))
        y2 = draw(st.floats(y1 + 1, h, allow_nan=False))
        boxes.append([x1, y1, x2, y2])
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return dict(img=img, img_shape=(h, w), gt_seg_map=seg, gt_bboxes=boxes,
                gt_bboxes_labels=np.arange(len(boxes), dtype=np.int64),
                gt_ignore_flags=np.zeros(len(boxes), bool), original_boxes=boxes.copy())


def check_sample(out, exact):
    """The properties every geometric transform must keep (see the module docstring).

    ``exact``: the transform only moves pixels (flip, crop, pad, expand), so image and mask
    agree exactly; otherwise (bilinear resize) the mask's source pixel is one of the pixels
    blended into the image pixel: within 1 of the image's coordinates.
    """
    img, seg, boxes = out['img'], out['gt_seg_map'], out['gt_bboxes']
    h, w = img.shape[:2]
    # img_shape is the image's size (SegPad keeps the unpadded one and sets pad_shape)
    assert seg.shape == (h, w) and tuple(out.get('pad_shape', out['img_shape'])[:2]) == (h, w)
    # masks aligned with images
    real = img[..., 2] == 0
    tol = 0 if exact else 1
    assert (seg[real] != FILL).all()
    assert np.abs(seg[real] // 1000 - img[..., 0][real].astype(int)).max(initial=0) <= tol
    assert np.abs(seg[real] % 1000 - img[..., 1][real].astype(int)).max(initial=0) <= tol
    if exact:
        assert (seg[(img == FILL).all(-1)] == FILL).all()
    # boxes inside the image, non-degenerate, their label and flag arrays in step
    labels = out['gt_bboxes_labels']
    assert len(labels) == len(boxes) == len(out['gt_ignore_flags'])
    assert len(set(labels.tolist())) == len(labels)
    if len(boxes):
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    # boxes on their objects: the original pixels under a box lie in its original box
    # (exactly when pixels only move: a pixel [c, c + 1) inside the box came from a pixel
    # inside the original box; a bilinear resize blends neighbours: within 2 pixels)
    margin = 1e-3 if exact else 2.0
    for box, label in zip(boxes, labels):
        x1, y1, x2, y2 = out['original_boxes'][label]
        c1, r1 = int(np.ceil(box[0])), int(np.ceil(box[1]))
        c2, r2 = int(np.floor(box[2])), int(np.floor(box[3]))
        inside = real[r1:r2, c1:c2]
        src_r = img[r1:r2, c1:c2, 0][inside].astype(float)
        src_c = img[r1:r2, c1:c2, 1][inside].astype(float)
        assert (src_c >= x1 - margin).all() and (src_c + 1 <= x2 + margin).all()
        assert (src_r >= y1 - margin).all() and (src_r + 1 <= y2 + margin).all()


def run(transform, sample, seed):
    np.random.seed(seed)
    sample = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in sample.items()}
    return transform(sample)


SEEDS = st.integers(0, 2**31 - 1)


@FAST
@given(samples(), SEEDS, st.sampled_from(['horizontal', 'vertical']))
def test_flip(sample, seed, direction):
    check_sample(run(RandomFlip(prob=1.0, direction=direction), sample, seed), exact=True)


@FAST
@given(samples(), SEEDS, st.floats(1.0, 3.0))
def test_expand(sample, seed, max_ratio):
    transform = Expand(mean=(FILL, FILL, FILL), ratio_range=(1, max_ratio), prob=1.0)
    check_sample(run(transform, sample, seed), exact=True)


@FAST
@given(samples(), SEEDS)
def test_min_iou_random_crop(sample, seed):
    check_sample(run(MinIoURandomCrop(), sample, seed), exact=True)


@FAST
@given(samples(), SEEDS, st.integers(4, 120), st.integers(4, 120), st.booleans())
def test_resize(sample, seed, w, h, keep_ratio):
    check_sample(run(Resize(scale=(w, h), keep_ratio=keep_ratio), sample, seed), exact=False)


@FAST
@given(samples(), SEEDS)
def test_ssd_train_chain(sample, seed):
    chain = [Expand(mean=(FILL, FILL, FILL), prob=0.5), MinIoURandomCrop(),
             RandomFlip(prob=0.5)]
    out = sample
    for k, transform in enumerate(chain):
        out = run(transform, out, seed + k)
        check_sample(out, exact=True)
    check_sample(run(Resize(scale=(48, 48)), out, seed), exact=False)


@FAST
@given(samples(), SEEDS, st.integers(2, 60), st.integers(2, 60))
def test_albu_bridge(sample, seed, ch, cw):
    side = min(sample['img'].shape[:2])  # the crop must fit after a transpose too
    transform = Albu([dict(type='HorizontalFlip', p=0.5), dict(type='VerticalFlip', p=0.5),
                      dict(type='Transpose', p=0.5),
                      dict(type='RandomCrop', height=min(ch, side), width=min(cw, side), p=1.0)])
    check_sample(run(transform, sample, seed), exact=True)


@FAST
@given(samples(), SEEDS, st.integers(2, 60), st.integers(2, 60), st.integers(2, 16))
def test_seg_transforms(sample, seed, ch, cw, divisor):
    # segmentation transforms move images and masks only: no boxes here
    sample.update(gt_bboxes=np.zeros((0, 4), np.float32), gt_bboxes_labels=np.zeros(0, np.int64),
                  gt_ignore_flags=np.zeros(0, bool))
    out = run(RandomCrop(crop_size=(ch, cw)), sample, seed)
    check_sample(out, exact=True)
    check_sample(run(SegPad(size_divisor=divisor, pad_val=FILL, seg_pad_val=FILL), out, seed),
                 exact=True)
    resized = run(RandomResize(scale=(60, 40), ratio_range=(0.5, 2.0)), out, seed)
    check_sample(resized, exact=False)


# --------------------------------------------------------------------------- box coder
@st.composite
def anchor_box_pairs(draw):
    n = draw(st.integers(1, 20))
    rng = np.random.default_rng(draw(SEEDS))
    centres = rng.uniform(0, 300, (n, 2))
    anchor_wh = rng.uniform(4, 200, (n, 2))
    # sizes within a factor 20 of the anchor's (the decoder bounds the ratio at 62.5)
    box_wh = anchor_wh * np.exp(rng.uniform(-np.log(20), np.log(20), (n, 2)))
    box_centres = centres + rng.uniform(-2, 2, (n, 2)) * anchor_wh
    anchors = np.concatenate([centres - anchor_wh / 2, centres + anchor_wh / 2], 1)
    boxes = np.concatenate([box_centres - box_wh / 2, box_centres + box_wh / 2], 1)
    variances = draw(st.sampled_from([(0.1, 0.1, 0.2, 0.2), (1.0, 1.0, 1.0, 1.0)]))
    return torch.tensor(anchors), torch.tensor(boxes), variances


@FAST
@given(anchor_box_pairs())
def test_box_coder_round_trip(pair):
    anchors, boxes, variances = pair
    coder = DeltaXYWHBoxCoder(variances=variances)
    deltas = coder.encode(anchors, boxes)
    scale = float((boxes[:, 2:] - boxes[:, :2]).abs().max())
    torch.testing.assert_close(coder.decode(anchors, deltas).double(), boxes,
                               atol=1e-4 * scale + 1e-4, rtol=1e-5)
    torch.testing.assert_close(coder.encode(anchors, coder.decode(anchors, deltas)), deltas,
                               atol=2e-3, rtol=1e-4)


# --------------------------------------------------------------------------- NMS
def greedy_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list:
    """Plain greedy NMS: highest score first (equal scores by index), drop boxes whose IoU
    with a kept box is > thr. IoU in float32 with whole-pixel boxes (exact areas)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        suppressed = False
        for j in kept:
            iw = max(np.float32(0), min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            ih = max(np.float32(0), min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = np.float32(iw * ih)
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / np.float32(area_i + area_j - inter) > thr:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept


@st.composite
def nms_cases(draw):
    n = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(SEEDS))
    xy = rng.integers(0, 60, (n, 2))
    wh = rng.integers(1, 30, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    levels = draw(st.sampled_from([4, 1000]))  # few levels: many score ties
    scores = (rng.integers(0, levels, n) / levels).astype(np.float32)
    thr = draw(st.sampled_from([0.25, 0.375, 0.5, 0.75]))
    return boxes, scores, thr


@FAST
@given(nms_cases())
def test_nms_equals_plain_greedy(case):
    boxes, scores, thr = case
    kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).tolist()
    assert kept == greedy_nms(boxes, scores, np.float32(thr))


# --------------------------------------------------------------------------- metrics
@st.composite
def detection_sets(draw):
    """A few images with ground truth (some ignored) and predictions of distinct scores,
    plus a permutation of the images and, per image, of its predictions."""
    rng = np.random.default_rng(draw(SEEDS))
    num_images = draw(st.integers(1, 5))
    images, next_score = [], iter(rng.permutation(1000)[:200] / 1000 + 0.0005)
    for i in range(num_images):
        def boxes(n):
            xy = rng.uniform(0, 80, (n, 2))
            return np.concatenate([xy, xy + rng.uniform(4, 40, (n, 2))], 1).astype(np.float32)
        n_gt, n_ign, n_pred = rng.integers(0, 5), rng.integers(0, 2), rng.integers(0, 8)
        gt, ign = boxes(n_gt), boxes(n_ign)
        pred = boxes(n_pred)
        near = rng.integers(0, max(n_gt, 1), n_pred)
        if n_gt:  # half the predictions near a ground-truth box
            use = rng.random(n_pred) < 0.5
            pred[use] = gt[near[use]] + rng.normal(0, 2, (use.sum(), 4)).astype(np.float32)
            pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        images.append(dict(
            img_id=i, ori_shape=(130, 130),
            gt=dict(bboxes=gt, labels=rng.integers(0, 2, n_gt)),
            ignored=dict(bboxes=ign, labels=rng.integers(0, 2, n_ign)),
            pred=dict(bboxes=pred, labels=rng.integers(0, 2, n_pred),
                      scores=np.array([next(next_score) for _ in range(n_pred)], np.float32))))
    image_order = draw(st.permutations(range(num_images)))
    pred_orders = [rng.permutation(len(img['pred']['scores'])) for img in images]
    return images, image_order, pred_orders


def det_samples(images, image_order=None, pred_orders=None):
    out = []
    for i in (image_order if image_order is not None else range(len(images))):
        img = images[i]
        order = pred_orders[i] if pred_orders is not None else slice(None)
        pred = {k: torch.as_tensor(v[order]) for k, v in img['pred'].items()}
        out.append(dict(img_id=img['img_id'], ori_shape=img['ori_shape'],
                        gt_instances={k: torch.as_tensor(v) for k, v in img['gt'].items()},
                        ignored_instances={k: torch.as_tensor(v)
                                           for k, v in img['ignored'].items()},
                        pred_instances=pred))
    return out


def evaluate(metric, samples_, classes=('a', 'b')):
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples_)
    return metric.evaluate(len(samples_))


@settings(max_examples=15, deadline=None, database=None)
@given(detection_sets(), st.sampled_from(['11points', 'area']))
def test_voc_metric_ignores_prediction_order(case, mode):
    images, image_order, pred_orders = case
    ref = evaluate(VOCMetric(iou_thr=[0.3, 0.5], eval_mode=mode), det_samples(images))
    out = evaluate(VOCMetric(iou_thr=[0.3, 0.5], eval_mode=mode),
                   det_samples(images, image_order, pred_orders))
    assert out == pytest.approx(ref, abs=1e-12)


@settings(max_examples=8, deadline=None, database=None)
@given(detection_sets())
def test_coco_metric_ignores_prediction_order(case):
    images, image_order, pred_orders = case
    ref = evaluate(CocoMetric(), det_samples(images))
    out = evaluate(CocoMetric(), det_samples(images, image_order, pred_orders))
    assert out == pytest.approx(ref, abs=1e-12, nan_ok=True)


@st.composite
def seg_sets(draw):
    rng = np.random.default_rng(draw(SEEDS))
    sets = []
    for _ in range(draw(st.integers(1, 5))):
        h, w = rng.integers(2, 12, 2)
        gt = rng.integers(0, 3, (1, h, w))
        pred = np.where(rng.random((1, h, w)) < 0.6, gt, rng.integers(0, 3, (1, h, w)))
        gt[rng.random((1, h, w)) < 0.1] = 255  # ignored pixels
        sets.append(dict(pred_sem_seg=dict(data=torch.as_tensor(pred)),
                         gt_sem_seg=dict(data=torch.as_tensor(gt))))
    return sets, draw(st.permutations(range(len(sets)))), draw(st.integers(1, 3))


@settings(max_examples=15, deadline=None, database=None)
@given(seg_sets())
def test_iou_metric_ignores_sample_order_and_batching(case):
    sets, order, batch = case

    def run_batches(samples_):
        metric = IoUMetric(iou_metrics=['mIoU', 'mDice'])
        metric.dataset_meta = dict(classes=('a', 'b', 'c'))
        for start in range(0, len(samples_), batch):
            metric.process({}, samples_[start:start + batch])
        return metric.evaluate(len(samples_))

    ref = run_batches(sets)
    out = run_batches([sets[i] for i in order])
    assert out == pytest.approx(ref, abs=1e-9, nan_ok=True)

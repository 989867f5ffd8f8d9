"""Plain numpy functions behind the detection metrics (testable without mmengine).

PASCAL VOC average precision, following the VOC devkit (``VOCevaldet.m``):

1. Detections of a class are ranked by score over the whole data set; equal scores keep
   the order of the results (image order, then order within the image), as the stable
   sort of ``VOCevaldet.m`` keeps the results file's order.
2. Each detection is compared with every ground-truth box of its class in its image and
   takes the one of highest IoU (the first on ties).
3. If that IoU is below the threshold the detection is a false positive (a match needs
   IoU >= threshold, as ``VOCevaldet.m``; py-faster-rcnn's ``voc_eval.py`` port uses ``>``,
   which differs only for an IoU exactly at the threshold). Otherwise: if that
   ground truth is ``difficult`` the detection is ignored (neither TP nor FP); if it is the
   first detection (in rank order) to take that ground truth it is a true positive; a later
   one is a false positive (a duplicate).
4. Difficult ground truths do not count in the number of positives.

Because a detection's ground-truth choice does not depend on the other detections (a
duplicate is not re-routed to the next-best box), step 3 is "first occurrence of each
ground-truth index in rank order", which vectorises with ``np.unique``.

``legacy_coordinate=True`` treats boxes as inclusive pixel ranges as the VOC devkit does:
width = x2 - x1 + 1 (the same as mmdet's ``use_legacy_coordinate``); the boxes must then
hold inclusive pixel indices, which ``VOCMetric`` makes from densebox's continuous boxes
with :func:`densebox.datasets.voc.xyxy_to_voc_box`. ``False`` is continuous-coordinate IoU.
"""
from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np

from densebox.ops import box_iou_np

__all__ = ['voc_ap', 'match_image', 'eval_voc', 'format_table',
           'to_numpy', 'sample_to_dict', 'read_instances']


def voc_ap(recall: np.ndarray, precision: np.ndarray, mode: str = 'area') -> float:
    """Average precision of one precision/recall curve.

    Args:
        recall: (D,) recall after each ranked detection (non-decreasing).
        precision: (D,) precision after each ranked detection.
        mode: ``'area'`` (VOC2010+: area under the monotone precision envelope) or
            ``'11points'`` (VOC2007: mean of the best precision at recall >= 0, 0.1, ..., 1).

    Returns:
        AP in [0, 1]; 0 for an empty curve.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(f'voc_ap: recall {recall.shape} and precision {precision.shape} differ')
    if mode == '11points':
        # i * 0.1 in floating point, as the devkit's 0:0.1:1 and mmdet's np.arange: a recall
        # of exactly 3/10 does not reach the threshold 0.30000000000000004.
        thresholds = np.arange(11) * 0.1
        # (11, D): best precision among points whose recall reaches each threshold
        reach = recall[None, :] >= thresholds[:, None]
        best = np.where(reach, precision[None, :], 0.0).max(axis=1, initial=0.0)
        return float(best.mean())
    if mode == 'area':
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        envelope = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))
    raise ValueError(f"voc_ap: mode must be 'area' or '11points', got {mode!r}")


def match_image(det_bboxes: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray,
                gt_bboxes: np.ndarray, gt_labels: np.ndarray, gt_difficult: np.ndarray,
                iou_thrs: Sequence[float], legacy_coordinate: bool = True
                ) -> Tuple[np.ndarray, np.ndarray]:
    """VOC matching of one image's detections (all classes at once).

    Args:
        det_bboxes: (K, 4) xyxy detections.
        det_scores: (K,) scores.
        det_labels: (K,) int class indices.
        gt_bboxes: (N, 4) xyxy ground truth (difficult ones included).
        gt_labels: (N,) int class indices.
        gt_difficult: (N,) bool, True for difficult / ignored ground truth.
        iou_thrs: T IoU thresholds; a match needs IoU >= threshold.
        legacy_coordinate: inclusive-pixel IoU (see module docstring).

    Returns:
        ``(tp, fp)``: two (T, K) bool arrays in the input detection order. A detection that
        is neither (it matched a difficult box) is left out of the precision/recall curve.
    """
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    det_labels = np.asarray(det_labels).reshape(-1)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    gt_difficult = np.asarray(gt_difficult, dtype=bool).reshape(-1)
    thrs = np.asarray(iou_thrs, dtype=np.float64).reshape(-1, 1)
    num_dets, num_gts = det_scores.shape[0], gt_labels.shape[0]
    if num_gts == 0:
        fp = np.ones((thrs.shape[0], num_dets), dtype=bool)
        return np.zeros_like(fp), fp

    ious = box_iou_np(det_bboxes, gt_bboxes, 1.0 if legacy_coordinate else 0.0)  # (K, N)
    same_class = det_labels[:, None] == gt_labels[None, :]
    ious = np.where(same_class, ious, -1.0)
    best_gt = ious.argmax(axis=1)  # (K,) first index on ties, as MATLAB's max
    best_iou = ious[np.arange(num_dets), best_gt]
    has_gt = same_class.any(axis=1)

    matched = has_gt[None, :] & (best_iou[None, :] >= thrs)  # (T, K)
    difficult = gt_difficult[best_gt][None, :] & matched
    candidate = matched & ~difficult

    # The first detection in rank order to reach a ground truth takes it.
    order = np.argsort(-det_scores, kind='stable')
    tp = np.zeros_like(matched)
    for t in range(thrs.shape[0]):  # a handful of thresholds, not boxes
        ranked = order[candidate[t, order]]
        _, first = np.unique(best_gt[ranked], return_index=True)
        tp[t, ranked[first]] = True
    fp = ~matched | (candidate & ~tp)
    return tp, fp


def eval_voc(det_results: Sequence[Dict[str, np.ndarray]],
             gt_results: Sequence[Dict[str, np.ndarray]], num_classes: int,
             iou_thrs: Union[float, Sequence[float]] = 0.5, mode: str = 'area',
             legacy_coordinate: bool = True) -> Dict[str, np.ndarray]:
    """PASCAL VOC AP per class over a data set.

    Args:
        det_results: one dict per image with ``bboxes`` (K, 4), ``scores`` (K,),
            ``labels`` (K,).
        gt_results: one dict per image with ``bboxes`` (N, 4), ``labels`` (N,) and
            ``difficult`` (N,) bool (optional, all False when absent).
        num_classes: C.
        iou_thrs: one threshold or T thresholds.
        mode: ``'area'`` or ``'11points'`` (see :func:`voc_ap`).
        legacy_coordinate: inclusive-pixel IoU (see module docstring).

    Returns:
        dict with ``ap`` (T, C), ``recall`` (T, C) final recall, ``num_gts`` (C,) non-difficult
        ground truths and ``num_dets`` (C,) detections. Classes without ground truth get
        AP ``nan``; leave them out of the mean as the devkit does.
    """
    if len(det_results) != len(gt_results):
        raise ValueError(f'eval_voc: {len(det_results)} detection results but '
                         f'{len(gt_results)} ground-truth entries')
    if mode not in ('area', '11points'):
        raise ValueError(f"eval_voc: mode must be 'area' or '11points', got {mode!r}")
    thrs = np.atleast_1d(np.asarray(iou_thrs, dtype=np.float64))
    num_thrs = thrs.shape[0]

    scores, labels, tps, fps = [], [], [], []
    num_gts = np.zeros(num_classes, dtype=np.int64)
    for det, gt in zip(det_results, gt_results):  # images differ in shape
        gt_labels = np.asarray(gt['labels'], dtype=np.int64).reshape(-1)
        difficult = np.asarray(gt.get('difficult', np.zeros(gt_labels.shape, bool)),
                               dtype=bool).reshape(-1)
        det_labels = np.asarray(det['labels'], dtype=np.int64).reshape(-1)
        for name, lab in (('detection', det_labels), ('ground-truth', gt_labels)):
            if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
                raise ValueError(f'eval_voc: {name} label {lab.min()}..{lab.max()} outside '
                                 f'0..{num_classes - 1}')
        num_gts += np.bincount(gt_labels[~difficult], minlength=num_classes)
        tp, fp = match_image(det['bboxes'], det['scores'], det_labels, gt['bboxes'],
                             gt_labels, difficult, thrs, legacy_coordinate)
        scores.append(np.asarray(det['scores'], dtype=np.float64).reshape(-1))
        labels.append(det_labels)
        tps.append(tp)
        fps.append(fp)

    scores = np.concatenate(scores) if scores else np.zeros(0)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    tps = np.concatenate(tps, axis=1) if tps else np.zeros((num_thrs, 0), bool)
    fps = np.concatenate(fps, axis=1) if fps else np.zeros((num_thrs, 0), bool)

    # Global ranking; ties keep image order then detection order (stable sort).
    order = np.argsort(-scores, kind='stable')
    labels, tps, fps = labels[order], tps[:, order], fps[:, order]

    ap = np.full((num_thrs, num_classes), np.nan)
    recall = np.full((num_thrs, num_classes), np.nan)
    num_dets = np.bincount(labels, minlength=num_classes)
    for c in range(num_classes):
        if num_gts[c] == 0:
            continue
        in_class = labels == c
        tp_cum = np.cumsum(tps[:, in_class], axis=1)  # (T, D_c)
        fp_cum = np.cumsum(fps[:, in_class], axis=1)
        counted = tps[:, in_class] | fps[:, in_class]  # drop detections on difficult boxes
        for t in range(num_thrs):
            rec = tp_cum[t, counted[t]] / num_gts[c]
            prec = tp_cum[t, counted[t]] / np.maximum(
                tp_cum[t, counted[t]] + fp_cum[t, counted[t]], np.finfo(np.float64).eps)
            ap[t, c] = voc_ap(rec, prec, mode)
            recall[t, c] = rec[-1] if rec.size else 0.0
    return dict(ap=ap, recall=recall, num_gts=num_gts, num_dets=num_dets)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table with a rule under the header; floats are printed with 3 decimals."""
    def cell(value):
        if isinstance(value, (float, np.floating)):
            return '-' if np.isnan(value) else f'{value:.3f}'
        return str(value)

    text = [[str(h) for h in header]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    lines = [' | '.join(v.ljust(w) for v, w in zip(r, widths)) for r in text]
    lines.insert(1, '-+-'.join('-' * w for w in widths))
    return '\n'.join(lines)


# ---- reading data samples (what mmengine's Evaluator hands a metric) ----
def to_numpy(value: Any, dtype=None) -> np.ndarray:
    """A tensor / array / list -> numpy array (on CPU, detached)."""
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def sample_to_dict(sample: Any) -> Dict[str, Any]:
    """mmengine's Evaluator gives dicts; accept data-sample objects too."""
    if isinstance(sample, dict):
        return sample
    if hasattr(sample, 'to_dict'):
        return sample.to_dict()
    raise TypeError(f'expected a data sample dict, got {type(sample).__name__}')


def read_instances(sample: Dict[str, Any], field: str, required: bool,
                   with_scores: bool = False) -> Dict[str, np.ndarray]:
    """Boxes (N, 4) float32, labels (N,) int64 and optionally scores (N,) float32 of one field.

    A missing optional field gives empty arrays; a missing required field raises.
    """
    inst = sample.get(field)
    if inst is None:
        if required:
            raise KeyError(f"data sample (img_id={sample.get('img_id')!r}) has no '{field}'")
        inst = {}
    if hasattr(inst, 'to_dict'):
        inst = inst.to_dict()
    bboxes = to_numpy(inst.get('bboxes', np.zeros((0, 4))), np.float32)
    if bboxes.size == 0:
        bboxes = bboxes.reshape(0, 4)
    labels = to_numpy(inst.get('labels', np.zeros(0)), np.int64).reshape(-1)
    if bboxes.ndim != 2 or bboxes.shape[1] != 4 or bboxes.shape[0] != labels.shape[0]:
        raise ValueError(f"{field} of img_id={sample.get('img_id')!r}: bboxes {bboxes.shape} "
                         f'and labels {labels.shape} do not match (expected (N, 4) and (N,))')
    out = dict(bboxes=bboxes, labels=labels)
    if with_scores:
        scores = to_numpy(inst.get('scores', np.zeros(0)), np.float32).reshape(-1)
        if scores.shape != labels.shape:
            raise ValueError(f"{field} of img_id={sample.get('img_id')!r}: scores "
                             f'{scores.shape} and labels {labels.shape} do not match')
        out['scores'] = scores
    return out

"""Error analysis of a test run: precision-recall curves per class and confusion matrices.

``tools/test.py CONFIG CKPT --plots [DIR]`` adds :class:`EvaluationPlots` to the test
evaluator; it writes pictures (:mod:`densebox.visualization.plots`) and the numbers behind
them (``analysis.json``) and returns no metric.

Detection (COCO, VOC or any data set with ``gt_instances``):

- PR curve of class c at one IoU threshold (0.5 by default): detections of c ranked by
  score over the data set, each one a true positive when it is the first to reach a ground
  truth of c with IoU >= the threshold (VOC matching, :func:`~.functional.match_image`);
  detections on ignored / difficult / crowd boxes count as neither. AP is the area under
  the monotone envelope (the VOC2010+ rule), so it equals :func:`~.functional.eval_voc`
  with ``mode='area'`` at that threshold.
- Confusion matrix ``(C + 1, C + 1)``, rows the ground-truth class, columns the predicted
  one, the last row / column "background": per image, detections scoring >= ``score_thr``
  are taken by decreasing score, each takes the not yet taken ground truth it overlaps most
  (any class, IoU >= the threshold) and adds one to [its class, the detection's class];
  a detection that takes none adds to [background, its class] (a false alarm) unless it
  overlaps an ignored box; a ground truth left untaken adds to [its class, background] (a
  miss).

Segmentation (samples with ``seg_logits`` and ``gt_sem_seg``):

- PR curve of class c over pixels: a pixel is called c when its softmax probability of c
  is >= t; precision and recall against the ground truth for t on a grid of
  ``num_bins`` thresholds, counted with one ``bincount`` per image.
- Confusion matrix ``(C, C)`` of pixel counts (the histogram the IoU metric sums,
  :func:`~.iou_metric.confusion_histogram`).
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from densebox.registry import METRICS
from densebox.ops import box_iou_np
from .functional import match_image, read_instances, sample_to_dict, voc_ap
from .iou_metric import confusion_histogram

__all__ = ['det_pr_curves', 'det_confusion_matrix', 'seg_pr_histograms', 'seg_pr_curves',
           'EvaluationPlots']


# ------------------------------------------------------------------------------ detection
def det_pr_curves(dets: Sequence[dict], gts: Sequence[dict], num_classes: int,
                  iou_thr: float = 0.5, legacy_coordinate: bool = False) -> List[dict]:
    """Precision-recall curve of each class over a data set.

    Args:
        dets: per image ``bboxes`` (K, 4), ``scores`` (K,), ``labels`` (K,).
        gts: per image ``bboxes`` (N, 4), ``labels`` (N,), ``difficult`` (N,) bool (ignored
            boxes: not positives, and a detection on one is not counted).
        num_classes: C.
        iou_thr: IoU a true positive needs.
        legacy_coordinate: inclusive-pixel IoU (VOC devkit) instead of continuous.

    Returns:
        C dicts ``{'recall', 'precision', 'scores'}`` ((D_c,) arrays in rank order),
        ``'ap'`` (nan without ground truth) and ``'num_gts'``.
    """
    scores, labels, tps, fps = [], [], [], []
    num_gts = np.zeros(num_classes, dtype=np.int64)
    for det, gt in zip(dets, gts):  # images differ in shape
        gt_labels = np.asarray(gt['labels'], np.int64).reshape(-1)
        difficult = np.asarray(gt.get('difficult', np.zeros(gt_labels.shape, bool)), bool)
        num_gts += np.bincount(gt_labels[~difficult], minlength=num_classes)
        tp, fp = match_image(det['bboxes'], det['scores'], det['labels'], gt['bboxes'],
                             gt_labels, difficult, [iou_thr], legacy_coordinate)
        scores.append(np.asarray(det['scores'], np.float64).reshape(-1))
        labels.append(np.asarray(det['labels'], np.int64).reshape(-1))
        tps.append(tp[0])
        fps.append(fp[0])
    scores = np.concatenate(scores) if scores else np.zeros(0)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    tps = np.concatenate(tps) if tps else np.zeros(0, bool)
    fps = np.concatenate(fps) if fps else np.zeros(0, bool)
    order = np.argsort(-scores, kind='stable')
    scores, labels, tps, fps = scores[order], labels[order], tps[order], fps[order]

    curves = []
    for c in range(num_classes):  # one curve per class: a handful of array ops each
        counted = (labels == c) & (tps | fps)
        tp_cum = np.cumsum(tps[counted])
        fp_cum = np.cumsum(fps[counted])
        recall = tp_cum / max(num_gts[c], 1)
        precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
        ap = voc_ap(recall, precision, 'area') if num_gts[c] else float('nan')
        curves.append(dict(recall=recall, precision=precision, scores=scores[counted],
                           ap=ap, num_gts=int(num_gts[c])))
    return curves


def det_confusion_matrix(dets: Sequence[dict], gts: Sequence[dict], num_classes: int,
                         score_thr: float = 0.3, iou_thr: float = 0.5) -> np.ndarray:
    """Detection confusion matrix (see the module docstring for the matching).

    Args:
        dets, gts: as :func:`det_pr_curves` (``difficult`` ground truth is ignored).
        num_classes: C.
        score_thr: detections below it are left out.
        iou_thr: overlap that pairs a detection with a ground truth.

    Returns:
        (C + 1, C + 1) int64, ``[gt class, predicted class]``, index C = background.
    """
    bg = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for det, gt in zip(dets, gts):
        keep = np.asarray(det['scores']) >= score_thr
        d_boxes = np.asarray(det['bboxes'], np.float64).reshape(-1, 4)[keep]
        d_labels = np.asarray(det['labels'], np.int64).reshape(-1)[keep]
        d_scores = np.asarray(det['scores'], np.float64).reshape(-1)[keep]
        g_labels = np.asarray(gt['labels'], np.int64).reshape(-1)
        ignored = np.asarray(gt.get('difficult', np.zeros(g_labels.shape, bool)), bool)
        g_boxes = np.asarray(gt['bboxes'], np.float64).reshape(-1, 4)
        ious = box_iou_np(d_boxes, g_boxes)  # (K, N)
        taken = np.zeros(len(g_labels), bool)
        for i in np.argsort(-d_scores, kind='stable'):  # greedy by score: inherently serial
            free = np.where(~taken & ~ignored & (ious[i] >= iou_thr), ious[i], -1.0)
            j = int(free.argmax()) if free.size else -1
            if j >= 0 and free[j] >= 0:
                taken[j] = True
                matrix[g_labels[j], d_labels[i]] += 1
            elif not (ignored & (ious[i] >= iou_thr)).any():
                matrix[bg, d_labels[i]] += 1
        np.add.at(matrix[:, bg], g_labels[~taken & ~ignored], 1)
    return matrix


# --------------------------------------------------------------------------- segmentation
def seg_pr_histograms(probs: torch.Tensor, gt: torch.Tensor, num_bins: int = 100,
                      ignore_index: int = 255) -> torch.Tensor:
    """Per class, how many pixels (all / of that class) fall in each probability bin.

    Args:
        probs: (C, H, W) class probabilities.
        gt: (H, W) ground truth; ``ignore_index`` pixels are skipped.
        num_bins: B bins of equal width over [0, 1].

    Returns:
        (2, C, B) int64 on ``probs``' device: ``[0]`` all valid pixels, ``[1]`` the pixels
        whose ground truth is that class, by bin of their probability of the class.
    """
    num_classes = probs.shape[0]
    valid = gt != ignore_index
    p = probs[:, valid]  # (C, N)
    g = gt[valid].to(torch.int64)
    bins = (p * num_bins).to(torch.int64).clamp_(0, num_bins - 1)
    flat = bins + torch.arange(num_classes, device=bins.device)[:, None] * num_bins
    size = num_classes * num_bins
    all_px = torch.bincount(flat.reshape(-1), minlength=size)
    own = flat.gather(0, g.clamp(0, num_classes - 1)[None])[0][g < num_classes]
    pos_px = torch.bincount(own, minlength=size)
    return torch.stack([all_px, pos_px]).view(2, num_classes, num_bins)


def seg_pr_curves(hist: np.ndarray) -> List[dict]:
    """PR curves from summed :func:`seg_pr_histograms`: threshold ``t_b = b / B``.

    Returns:
        C dicts ``{'recall', 'precision', 'thresholds'}`` ((B,) arrays, thresholds
        decreasing so recall rises), ``'ap'`` (area under the envelope; nan without
        ground-truth pixels) and ``'num_gts'`` (pixels).
    """
    hist = np.asarray(hist, dtype=np.float64)
    num_bins = hist.shape[2]
    above_all = np.cumsum(hist[0, :, ::-1], axis=1)  # (C, B): pixels with p >= t, t falling
    above_pos = np.cumsum(hist[1, :, ::-1], axis=1)
    total_pos = hist[1].sum(axis=1)
    thresholds = np.arange(num_bins)[::-1] / num_bins
    curves = []
    for c in range(hist.shape[1]):
        recall = above_pos[c] / max(total_pos[c], 1)
        precision = np.where(above_all[c] > 0, above_pos[c] / np.maximum(above_all[c], 1), 1.0)
        ap = voc_ap(recall, precision, 'area') if total_pos[c] else float('nan')
        curves.append(dict(recall=recall, precision=precision, thresholds=thresholds, ap=ap,
                           num_gts=int(total_pos[c])))
    return curves


# --------------------------------------------------------------------------------- metric
@METRICS.register_module()
class EvaluationPlots(BaseMetric):
    """Write PR curves and a confusion matrix of the test set into ``out_dir``.

    Files: ``pr_curves.png`` (all classes, the mean bold), ``pr_curves_per_class.png``
    (one panel per class), ``confusion_matrix.png`` (row-normalised, counts in
    ``analysis.json``) and ``analysis.json`` (curves, APs and the matrix).

    Args:
        out_dir: folder for the files (created).
        iou_thr: detection IoU threshold of the curves and the matrix.
        score_thr: detections below it are left out of the confusion matrix.
        num_bins: thresholds of the segmentation PR curves.
        ignore_index: ground-truth value skipped in segmentation.
    """

    def __init__(self, out_dir: str, iou_thr: float = 0.5, score_thr: float = 0.3,
                 num_bins: int = 100, ignore_index: int = 255, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.out_dir = str(out_dir)
        self.iou_thr = float(iou_thr)
        self.score_thr = float(score_thr)
        self.num_bins = int(num_bins)
        self.ignore_index = int(ignore_index)

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            sample = sample_to_dict(sample)
            if 'pred_instances' in sample:
                pred = read_instances(sample, 'pred_instances', required=True, with_scores=True)
                gt = read_instances(sample, 'gt_instances', required=True)
                ignored = read_instances(sample, 'ignored_instances', required=False)
                gt_entry = dict(
                    bboxes=np.concatenate([gt['bboxes'], ignored['bboxes']]),
                    labels=np.concatenate([gt['labels'], ignored['labels']]),
                    difficult=np.concatenate([np.zeros(len(gt['labels']), bool),
                                              np.ones(len(ignored['labels']), bool)]))
                self.results.append(('det', pred, gt_entry))
            elif 'pred_sem_seg' in sample:
                self.results.append(('seg',) + self._seg_counts(sample))
            else:
                raise KeyError(f"EvaluationPlots: sample {sample.get('img_path')} has neither "
                               'pred_instances nor pred_sem_seg')

    def _seg_counts(self, sample: dict) -> tuple:
        classes = (self.dataset_meta or {}).get('classes') or ()
        if 'gt_sem_seg' not in sample:
            raise KeyError(f"EvaluationPlots: sample {sample.get('img_path')} has no gt_sem_seg")
        gt = sample['gt_sem_seg']['data'].squeeze(0)
        pred = sample['pred_sem_seg']['data'].squeeze(0)
        num_classes = len(classes) if classes else int(sample['seg_logits']['data'].shape[0])
        hist = confusion_histogram(pred, gt, num_classes, self.ignore_index).cpu()
        pr = None
        if 'seg_logits' in sample:
            logits = sample['seg_logits']['data'].float()
            # TTA models already hold probabilities; a softmax of logits otherwise
            is_prob = bool(logits.min() >= 0) and bool(torch.allclose(
                logits.sum(0), torch.ones((), device=logits.device), atol=1e-3))
            probs = logits if is_prob else logits.softmax(0)
            pr = seg_pr_histograms(probs, gt.to(probs.device), self.num_bins,
                                   self.ignore_index).cpu()
        return hist, pr

    def compute_metrics(self, results: list) -> Dict[str, float]:
        from densebox.visualization import plots
        meta = self.dataset_meta or {}
        classes = list(meta.get('classes') or ())
        os.makedirs(self.out_dir, exist_ok=True)
        kinds = {r[0] for r in results}
        if not results:
            print_log('EvaluationPlots: no samples, nothing plotted', logger='current', level=30)
            return {}
        if kinds == {'det'}:
            dets = [r[1] for r in results]
            gts = [r[2] for r in results]
            if not classes:
                top = max([int(e['labels'].max()) for e in dets + gts if e['labels'].size] or [0])
                classes = [f'class_{i}' for i in range(top + 1)]
            curves = det_pr_curves(dets, gts, len(classes), self.iou_thr)
            matrix = det_confusion_matrix(dets, gts, len(classes), self.score_thr, self.iou_thr)
            axis_names = classes + ['background']
            what = (f'detection, IoU >= {self.iou_thr:g}; detections scoring >= '
                    f'{self.score_thr:g}, IoU >= {self.iou_thr:g}')
        elif kinds == {'seg'}:
            matrix = sum(r[1] for r in results).numpy()
            prs = [r[2] for r in results if r[2] is not None]
            curves = seg_pr_curves(sum(prs).numpy()) if prs else None
            if not classes:
                classes = [f'class_{i}' for i in range(matrix.shape[0])]
            axis_names = classes
            what = 'segmentation, pixels'
        else:
            raise ValueError('EvaluationPlots: a mix of detection and segmentation samples')

        palette = meta.get('palette')
        written = []
        if curves is not None:
            written += plots.plot_pr_curves(curves, classes, osp.join(self.out_dir, 'pr_curves.png'),
                                            title=f'Precision-recall ({what.split(";")[0]})',
                                            palette=palette)
            written += plots.plot_pr_grid(curves, classes,
                                          osp.join(self.out_dir, 'pr_curves_per_class.png'),
                                          palette=palette)
        written += plots.plot_confusion_matrix(
            matrix, axis_names, osp.join(self.out_dir, 'confusion_matrix.png'),
            title=f'Confusion matrix ({what.split("; ")[-1]})')
        summary = dict(task=sorted(kinds)[0], classes=classes, description=what,
                       confusion_matrix=matrix.tolist(), confusion_axes=axis_names,
                       pr_curves=None if curves is None else {
                           name: {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                  for k, v in curve.items()}
                           for name, curve in zip(classes, curves)})
        path = osp.join(self.out_dir, 'analysis.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(summary, f, allow_nan=True)
        os.replace(path + '.tmp', path)
        print_log(f'EvaluationPlots: {", ".join(osp.basename(p) for p in written)} and '
                  f'analysis.json written to {self.out_dir}', logger='current')
        return {}

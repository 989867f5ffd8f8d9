"""Semantic segmentation metrics from a confusion histogram.

``process`` counts, per image, the (C, C) histogram ``hist[gt, pred]`` of the pixels whose
ground truth is not ``ignore_index`` with one ``torch.bincount`` on the device the predictions
live on, and keeps its diagonal, row and column sums (all the metrics need). One result per
image matters with several processes: mmengine drops the samples a distributed sampler padded
by counting results, one per sample. ``compute_metrics`` sums them and derives, per class c,

    IoU  = hist[c, c] / (row_c + col_c - hist[c, c])      (row: gt area, col: predicted area)
    Acc  = hist[c, c] / row_c
    Dice = 2 hist[c, c] / (row_c + col_c)
    Precision = hist[c, c] / col_c, Recall = Acc,
    Fscore = (1 + b^2) hist[c, c] / ((1 + b^2) hist[c, c] + b^2 FN + FP)
             (FN = row_c - hist[c, c], FP = col_c - hist[c, c])

and aAcc = trace / total. A class with no ground-truth and no predicted pixel has IoU NaN;
means skip NaNs (the convention of mmseg and of the Cityscapes evaluation) unless
``nan_to_num`` replaces them first. Numbers are percentages.

The F-score is ``(1 + b^2) P R / (b^2 P + R)`` wherever P and R are defined and not both 0,
written in counts so that it is defined wherever the class was predicted or present: a
class predicted but never present (R undefined), present but never predicted (P
undefined), or both but never where predicted (P = R = 0) scores 0, as in sklearn's
``fbeta_score``; with b = 1 it is the Dice coefficient. (mmseg computes it from P and R
and gets NaN for those classes, which its mean then skips.)
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from densebox.registry import METRICS


def confusion_histogram(pred: torch.Tensor, gt: torch.Tensor, num_classes: int,
                        ignore_index: int = 255) -> torch.Tensor:
    """Confusion counts of one or more label maps, on their device.

    Args:
        pred: (...) int predicted classes in [0, num_classes).
        gt: (...) int ground truth, same shape; ``ignore_index`` pixels are skipped.
        num_classes: C.
        ignore_index: ground-truth value to skip.
    Returns:
        (C, C) int64, ``hist[g, p]`` = number of pixels with ground truth g predicted p.
    Raises:
        ValueError: shapes differ, or a label is outside [0, C) (and not ignore_index).
    """
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {tuple(pred.shape)} != ground truth shape '
                         f'{tuple(gt.shape)}')
    gt = gt.to(device=pred.device, dtype=torch.int64)
    pred = pred.to(torch.int64)
    valid = gt != ignore_index
    gt, pred = gt[valid], pred[valid]
    bad_gt = (gt < 0) | (gt >= num_classes)
    bad_pred = (pred < 0) | (pred >= num_classes)
    if bool((bad_gt | bad_pred).any()):
        raise ValueError(f'labels outside [0, {num_classes}) (ignore_index {ignore_index}): '
                         f'ground truth {gt[bad_gt].unique().tolist()[:10]}, '
                         f'prediction {pred[bad_pred].unique().tolist()[:10]}')
    return torch.bincount(gt * num_classes + pred,
                          minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def histogram_areas(hist: torch.Tensor) -> torch.Tensor:
    """(3, C): the diagonal (true positives), row sums (gt area) and column sums (predicted
    area) of a (C, C) histogram."""
    return torch.stack([torch.diagonal(hist), hist.sum(dim=1), hist.sum(dim=0)])


def histogram_to_metrics(hist: np.ndarray, beta: float = 1.0) -> Dict[str, np.ndarray]:
    """Per-class ratios (fractions, NaN where undefined) and aAcc from a (C, C) histogram."""
    hist = np.asarray(hist, dtype=np.float64)
    return areas_to_metrics(np.diag(hist), hist.sum(axis=1), hist.sum(axis=0), beta)


def areas_to_metrics(tp: np.ndarray, gt_area: np.ndarray, pred_area: np.ndarray,
                     beta: float = 1.0) -> Dict[str, np.ndarray]:
    """Per-class ratios and aAcc from (C,) true-positive, gt and predicted pixel counts."""
    tp, gt_area, pred_area = (np.asarray(a, dtype=np.float64) for a in (tp, gt_area, pred_area))
    b2 = beta ** 2
    with np.errstate(divide='ignore', invalid='ignore'):
        precision = tp / pred_area
        recall = tp / gt_area
        # (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP): 0, not NaN, for a class that was
        # predicted or present but never hit (see the module docstring)
        fscore = (1 + b2) * tp / (b2 * gt_area + pred_area)
        return dict(
            aAcc=np.array(tp.sum() / gt_area.sum()),
            IoU=tp / (gt_area + pred_area - tp),
            Acc=recall,
            Dice=2 * tp / (gt_area + pred_area),
            Precision=precision,
            Recall=recall,
            Fscore=fscore)


_PER_CLASS = {'mIoU': ('IoU',), 'mDice': ('Dice',), 'mFscore': ('Fscore', 'Precision', 'Recall')}


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table with columns padded to their widest cell."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [' | '.join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, '-+-'.join('-' * w for w in widths))
    return '\n'.join(lines)


@METRICS.register_module()
class IoUMetric(BaseMetric):
    """aAcc, mIoU, mAcc (and optionally mDice, mFscore) of semantic segmentation.

    Args:
        ignore_index: ground-truth value that is not evaluated.
        iou_metrics: any of 'mIoU', 'mDice', 'mFscore'. mAcc and aAcc always come.
        nan_to_num: if set, per-class NaNs (classes absent from ground truth and prediction)
            become this value before averaging; None skips them.
        beta: weight of recall in the F-score.
        collect_device: 'cpu' or 'gpu', for gathering results across processes.
        prefix: prefix of the returned keys; none by default ('mIoU', ...).

    Samples (mmengine hands them over as dicts): ``sample['pred_sem_seg']['data']`` (1, H, W)
    and ``sample['gt_sem_seg']['data']`` (1, H, W), both at the original image size. Class
    names come from ``dataset_meta['classes']``.
    """

    default_prefix: Optional[str] = None

    def __init__(self, ignore_index: int = 255, iou_metrics: Sequence[str] = ('mIoU',),
                 nan_to_num: Optional[float] = None, beta: float = 1.0,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(iou_metrics, str):
            iou_metrics = [iou_metrics]
        unknown = set(iou_metrics) - set(_PER_CLASS)
        if unknown:
            raise KeyError(f'IoUMetric: unknown iou_metrics {sorted(unknown)}; '
                           f'choose from {sorted(_PER_CLASS)}')
        self.ignore_index = ignore_index
        self.metrics = list(iou_metrics)
        self.nan_to_num = nan_to_num
        self.beta = beta

    @property
    def num_classes(self) -> int:
        if not self.dataset_meta or not self.dataset_meta.get('classes'):
            raise ValueError("IoUMetric needs dataset_meta['classes'] (the Runner sets it "
                             "from the dataset's metainfo)")
        return len(self.dataset_meta['classes'])

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Add one (3, C) result per image: its histogram's diagonal, row and column sums."""
        num_classes = self.num_classes
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze(0)
            gt = sample['gt_sem_seg']['data'].squeeze(0)
            try:
                h = confusion_histogram(pred, gt, num_classes, self.ignore_index)
            except ValueError as err:
                raise ValueError(f"IoUMetric: {sample.get('img_path', '')}: {err}") from None
            self.results.append(histogram_areas(h))

    def compute_metrics(self, results: List[torch.Tensor]) -> Dict[str, float]:
        """Sum the per-image areas, log a per-class table, return percentages."""
        areas = torch.zeros(3, self.num_classes, dtype=torch.int64)
        for a in results:
            areas += a.cpu()
        per_class = areas_to_metrics(*areas.numpy(), beta=self.beta)
        if self.nan_to_num is not None:
            per_class = {k: np.nan_to_num(v, nan=self.nan_to_num) for k, v in per_class.items()}
        names = ['Acc'] + [n for m in self.metrics for n in _PER_CLASS[m]]
        out = {'aAcc': float(per_class['aAcc']) * 100}
        for name in names:
            values = per_class[name]
            mean = np.nanmean(values) if not np.isnan(values).all() else float('nan')
            out['m' + name] = float(mean) * 100
        self._log_table(per_class)
        return out

    def _log_table(self, per_class: Dict[str, np.ndarray]) -> None:
        classes = self.dataset_meta['classes']
        columns = [n for n in dict.fromkeys(
            [n for m in self.metrics for n in _PER_CLASS[m]] + ['Acc'])]
        rows = [[c] + [f'{per_class[n][i] * 100:.2f}' for n in columns]
                for i, c in enumerate(classes)]
        MMLogger.get_current_instance().info(
            'per-class results:\n' + format_table(['Class'] + columns, rows))

"""PASCAL VOC mean average precision (VOC devkit matching, 11-point or area AP)."""
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from densebox.datasets.voc import xyxy_to_voc_box
from densebox.registry import METRICS
from .functional import eval_voc, format_table, read_instances, sample_to_dict

BOX_CONVENTIONS = ('xyxy', 'voc_inclusive')


@METRICS.register_module()
class VOCMetric(BaseMetric):
    """VOC mAP over a data set.

    Matching follows the VOC devkit (see :mod:`densebox.evaluation.functional`): detections
    ranked by score over the whole set, each one compared with the highest-IoU ground truth
    of its class in its image; ``ignored_instances`` are the ``difficult`` boxes (a detection
    matching one is neither TP nor FP, and they are not counted as positives).

    Boxes: ground truth and detections are turned into VOC's inclusive pixel boxes with
    :func:`densebox.datasets.voc.xyxy_to_voc_box` (the box convention of ``VOCDataset``,
    written there) and then measured as the devkit measures them, width
    ``xmax - xmin + 1``; the APs are those the devkit computes on the xml's numbers and a
    results file holding ``xyxy_to_voc_box`` of the detections.

    Args:
        iou_thr: IoU threshold, or a list of them (one AP per threshold).
        eval_mode: ``'11points'`` (VOC2007 test protocol) or ``'area'`` (VOC2010+).
        box_convention: ``'xyxy'`` (default): densebox's boxes (continuous pixel edges, what
            ``VOCDataset`` and the models give); ``'voc_inclusive'``: the boxes already hold
            inclusive pixel indices (e.g. ground truth and detections kept in mmdetection's
            ``[xmin - 1, ..., xmax - 1]`` form) and get the devkit's arithmetic as they are.
        collect_device: ``'cpu'`` or ``'gpu'`` for gathering results across ranks.
        prefix: key prefix in the metric dict.

    Returns from ``evaluate``: ``{'pascal_voc/mAP': mean over thresholds,
    'pascal_voc/AP50': ..., ...}`` as fractions in [0, 1]. Classes without (non-difficult)
    ground truth are left out of the mean.
    """

    default_prefix = 'pascal_voc'

    def __init__(self, iou_thr: Union[float, Sequence[float]] = 0.5,
                 eval_mode: str = '11points', box_convention: str = 'xyxy',
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.iou_thrs = [float(t) for t in np.atleast_1d(np.asarray(iou_thr, dtype=float))]
        if not self.iou_thrs or not all(0.0 < t <= 1.0 for t in self.iou_thrs):
            raise ValueError(f'VOCMetric: iou_thr must be in (0, 1], got {iou_thr!r}')
        if eval_mode not in ('11points', 'area'):
            raise ValueError(f"VOCMetric: eval_mode must be '11points' or 'area', "
                             f'got {eval_mode!r}')
        if box_convention not in BOX_CONVENTIONS:
            raise ValueError(f'VOCMetric: box_convention must be one of {BOX_CONVENTIONS}, '
                             f'got {box_convention!r}')
        self.eval_mode = eval_mode
        self.box_convention = box_convention

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Store numpy predictions and ground truth of each sample.

        Each sample has ``pred_instances`` (bboxes (K, 4) in original pixels, scores (K,),
        labels (K,)), ``gt_instances`` (bboxes (N, 4), labels (N,)) and optionally
        ``ignored_instances`` (difficult boxes, same fields).
        """
        for sample in data_samples:
            sample = sample_to_dict(sample)
            pred = read_instances(sample, 'pred_instances', required=True, with_scores=True)
            gt = read_instances(sample, 'gt_instances', required=True)
            ignored = read_instances(sample, 'ignored_instances', required=False)
            if self.box_convention == 'xyxy':
                for entry in (pred, gt, ignored):
                    entry['bboxes'] = xyxy_to_voc_box(entry['bboxes'])
            gt_entry = dict(
                bboxes=np.concatenate([gt['bboxes'], ignored['bboxes']]),
                labels=np.concatenate([gt['labels'], ignored['labels']]),
                difficult=np.concatenate([np.zeros(len(gt['labels']), bool),
                                          np.ones(len(ignored['labels']), bool)]))
            self.results.append((gt_entry, pred))

    def _class_names(self, num_labels: int) -> List[str]:
        classes = (self.dataset_meta or {}).get('classes')
        if classes is None:
            return [f'class_{i}' for i in range(num_labels)]
        return list(classes)

    def compute_metrics(self, results: List[Any]) -> Dict[str, float]:
        """VOC AP per class and threshold; logs a table, returns mAP and AP<thr>."""
        gts = [r[0] for r in results]
        dets = [r[1] for r in results]
        max_label = max([int(e['labels'].max()) for e in gts + dets if e['labels'].size] or [-1])
        class_names = self._class_names(max_label + 1)
        if max_label >= len(class_names):
            raise ValueError(f'VOCMetric: label {max_label} but dataset_meta has only '
                             f'{len(class_names)} classes')
        # the devkit's inclusive-pixel arithmetic on VOC pixel boxes (see process)
        out = eval_voc(dets, gts, len(class_names), self.iou_thrs, self.eval_mode,
                       legacy_coordinate=True)

        metrics = {}
        has_gt = out['num_gts'] > 0
        for t, thr in enumerate(self.iou_thrs):
            mean_ap = float(out['ap'][t, has_gt].mean()) if has_gt.any() else 0.0
            metrics[f'AP{int(round(thr * 100)):02d}'] = mean_ap
            rows = [[name, int(out['num_gts'][c]), int(out['num_dets'][c]),
                     float(out['recall'][t, c]), float(out['ap'][t, c])]
                    for c, name in enumerate(class_names)]
            rows.append(['mAP', '', '', '', mean_ap])
            table = format_table(['class', 'gts', 'dets', 'recall', 'ap'], rows)
            print_log(f'\nVOC AP@{thr} ({self.eval_mode}):\n{table}', logger='current')
        metrics['mAP'] = float(np.mean([metrics[k] for k in list(metrics)]))
        return metrics

"""Metrics (registered in ``densebox.registry.METRICS``) and the plain functions behind them."""
from .cityscapes_metric import CityscapesMetric
from .coco_metric import CocoMetric
from .dump import DumpPredictions
from .iou_metric import IoUMetric
from .voc_metric import VOCMetric

__all__ = ['CityscapesMetric', 'CocoMetric', 'DumpPredictions', 'IoUMetric', 'VOCMetric']

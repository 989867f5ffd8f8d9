"""Metrics (registered in ``densebox.registry.METRICS``) and the plain functions behind them."""
from .analysis import EvaluationPlots
from .cityscapes_metric import CityscapesMetric
from .coco_metric import CocoMetric
from .dump import DumpPredictions
from .export import DumpCocoResults, DumpSegMasks
from .iou_metric import IoUMetric
from .voc_metric import VOCMetric

__all__ = ['CityscapesMetric', 'CocoMetric', 'DumpCocoResults', 'DumpPredictions', 'DumpSegMasks',
           'EvaluationPlots', 'IoUMetric', 'VOCMetric']

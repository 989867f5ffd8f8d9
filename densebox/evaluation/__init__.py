"""Metrics (registered in ``densebox.registry.METRICS``) and the plain functions behind them."""
from .coco_metric import CocoMetric
from .voc_metric import VOCMetric

__all__ = ['CocoMetric', 'VOCMetric']

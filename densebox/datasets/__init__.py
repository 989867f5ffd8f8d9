"""Data sets (registered in ``densebox.registry.DATASETS``) and the synthetic shapes data."""
from . import transforms  # noqa: F401  (registers the transforms)
from .base_det import BaseDetDataset
from .coco import COCO_CLASSES, CocoDetDataset
from .shapes import SHAPES_CLASSES, ensure_shapes, generate_shapes
from .voc import VOC_CLASSES, VOCDataset

__all__ = ['BaseDetDataset', 'CocoDetDataset', 'COCO_CLASSES', 'VOCDataset', 'VOC_CLASSES',
           'SHAPES_CLASSES', 'ensure_shapes', 'generate_shapes']

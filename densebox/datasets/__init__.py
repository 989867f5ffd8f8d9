"""Data sets (registered in ``densebox.registry.DATASETS``) and the synthetic shapes data."""
from . import transforms  # noqa: F401  (registers the transforms)
from .ade20k import ADE20K_CLASSES, ADE20KDataset
from .base_det import BaseDetDataset
from .base_seg import BaseSegDataset
from .cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CityscapesDataset
from .cityscapes27 import CITYSCAPES27_CLASSES, Cityscapes27Dataset
from .coco_stuff import COCO_STUFF_27_CLASSES, COCO_STUFF_CLASSES, CocoStuff27Dataset
from .coco import COCO_CLASSES, CocoDetDataset
from .shapes import SHAPES_CLASSES, ensure_shapes, generate_shapes
from .shapes_seg import SHAPES_SEG_CLASSES, ShapesSegDataset
from .voc import VOC_CLASSES, VOCDataset
from .voc_seg import VOC_SEG_CLASSES, VOCSegDataset, voc_colormap

__all__ = ['ADE20K_CLASSES', 'ADE20KDataset', 'BaseDetDataset', 'BaseSegDataset',
           'CITYSCAPES_CLASSES', 'CITYSCAPES_PALETTE', 'CityscapesDataset', 'COCO_CLASSES',
           'CITYSCAPES27_CLASSES', 'Cityscapes27Dataset', 'COCO_STUFF_27_CLASSES',
           'COCO_STUFF_CLASSES', 'CocoStuff27Dataset',
           'CocoDetDataset', 'SHAPES_CLASSES', 'ensure_shapes', 'generate_shapes',
           'SHAPES_SEG_CLASSES', 'ShapesSegDataset', 'VOC_CLASSES', 'VOCDataset',
           'VOC_SEG_CLASSES', 'VOCSegDataset', 'voc_colormap']

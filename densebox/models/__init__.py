"""Models: importing this package registers every model part in ``densebox.registry.MODELS``."""
from . import backbones, det_heads, detectors, losses, necks, seg_heads, segmentors, tta  # noqa: F401
from .data_preprocessor import DetDataPreprocessor, SegDataPreprocessor

__all__ = ['DetDataPreprocessor', 'SegDataPreprocessor']

"""Data pipeline transforms (registered in ``densebox.registry.TRANSFORMS``)."""
from .albu import Albu
from .center_crop import CenterCrop
from .formatting import PackDetInputs, PackSegInputs
from .geometric import Expand, MinIoURandomCrop, RandomFlip, Resize
from .loading import LoadAnnotations, LoadImageFromFile
from .photometric import PhotoMetricDistortion
from .seg_transforms import RandomCrop, RandomResize, SegPad
from .tta import TestTimeAug

__all__ = ['Albu', 'CenterCrop', 'PackDetInputs', 'PackSegInputs', 'Expand', 'MinIoURandomCrop', 'RandomFlip',
           'Resize', 'LoadAnnotations', 'LoadImageFromFile', 'PhotoMetricDistortion',
           'RandomCrop', 'RandomResize', 'SegPad', 'TestTimeAug']

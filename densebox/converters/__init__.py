"""Weight converters from other libraries' checkpoints to densebox checkpoints.

Importing this package also registers the few task utilities that converted models need
(e.g. :class:`TorchvisionSSDAnchorGenerator`), which is why configs for converted weights
list ``densebox.converters`` in ``custom_imports``.
"""
from .torchvision_ssd import (COCO_CATEGORY_IDS, TORCHVISION_NUM_LOGITS,
                              TorchvisionSSDAnchorGenerator, convert_torchvision_ssd300,
                              torchvision_label_map)

__all__ = ['COCO_CATEGORY_IDS', 'TORCHVISION_NUM_LOGITS', 'TorchvisionSSDAnchorGenerator', 'convert_torchvision_ssd300',
           'torchvision_label_map']

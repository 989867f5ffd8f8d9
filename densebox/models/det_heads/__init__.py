from .anchors import SSDAnchorGenerator
from .assigner import SSDMatcher
from .box_coder import DeltaXYWHBoxCoder
from .ssd_head import SSDHead, hard_negative_mask

__all__ = ['SSDAnchorGenerator', 'SSDMatcher', 'DeltaXYWHBoxCoder', 'SSDHead', 'hard_negative_mask']

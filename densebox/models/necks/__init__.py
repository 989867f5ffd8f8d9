from .fpn import FPN
from .ssd_neck import L2Norm, SSDNeck

__all__ = ['FPN', 'L2Norm', 'SSDNeck']

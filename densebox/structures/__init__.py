from .bbox import bbox_area, bbox_clip, bbox_xyxy_to_cxcywh, bbox_cxcywh_to_xyxy
from .data_sample import DetDataSample, SegDataSample

__all__ = ['DetDataSample', 'SegDataSample', 'bbox_area', 'bbox_clip', 'bbox_xyxy_to_cxcywh',
           'bbox_cxcywh_to_xyxy']

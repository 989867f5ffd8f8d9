"""Deployment: ONNX export with post-processing in the graph (see :mod:`densebox.deploy.onnx`)."""
from .onnx import (DetectorForExport, NonMaxSuppression, SegmentorForExport, default_input_shape,
                   export_onnx)

__all__ = ['export_onnx', 'DetectorForExport', 'SegmentorForExport', 'NonMaxSuppression',
           'default_input_shape']

"""Deployment: ONNX export with post-processing in the graph (:mod:`densebox.deploy.onnx`)
and runners for the exported graphs in onnxruntime / OpenVINO that return the same result
objects as :func:`densebox.inference` (:mod:`densebox.deploy.runtime`)."""
from .onnx import (DetectorForExport, NonMaxSuppression, SegmentorForExport, default_input_shape,
                   export_onnx)
from .runtime import (BACKENDS, RUNTIMES, AutoBackend, CompiledGraph, OnnxDetector, OnnxModel,
                      OnnxSegmentor, available_backends, runtime_available, wrap_backend)

__all__ = ['export_onnx', 'DetectorForExport', 'SegmentorForExport', 'NonMaxSuppression',
           'default_input_shape', 'OnnxModel', 'OnnxDetector', 'OnnxSegmentor', 'AutoBackend',
           'CompiledGraph', 'available_backends', 'runtime_available', 'wrap_backend',
           'BACKENDS', 'RUNTIMES']

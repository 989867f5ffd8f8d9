"""densebox.ops: NMS, batched NMS, segmented (fixed-shape) NMS, box IoU and RoIAlign, and
the per-shape choice of CPU convolution kernel for inference (:func:`autotune_cpu_convs`).

Backed by densebox's own C++ (CPU) and CUDA kernels in ``csrc/``, compiled on first use and
cached (see :mod:`densebox.ops._ext`; ``python -m densebox.ops build`` builds ahead of
time), with torchvision.ops as the fallback when no compiler is available or the build
fails (one warning says so). ``DENSEBOX_OPS=ext|torchvision`` forces a backend;
:func:`backend` tells which one serves a device.
"""
from ._ext import ExtensionBuildError, backend
from .boxes import box_iou
from .conv import autotune_cpu_convs
from .nms import batched_nms, nms, segmented_nms
from .roi_align import RoIAlign, boxes_to_rois, roi_align

__all__ = ['nms', 'batched_nms', 'segmented_nms', 'box_iou', 'roi_align', 'RoIAlign', 'boxes_to_rois',
           'backend', 'ExtensionBuildError', 'autotune_cpu_convs']

"""densebox.ops: NMS, batched NMS, segmented (fixed-shape) NMS, box IoU and RoIAlign, and
faster kernels for CPU inference (:func:`speed_up_cpu_inference`).

Backed by densebox's own C++ (CPU) and CUDA kernels in ``csrc/``, compiled on first use and
cached (see :mod:`densebox.ops._ext`; ``python -m densebox.ops build`` builds ahead of
time), with torchvision.ops as the fallback when no compiler is available or the build
fails (one warning says so). ``DENSEBOX_OPS=ext|torchvision`` forces a backend;
:func:`backend` tells which one serves a device.
"""
from ._ext import ExtensionBuildError, backend
from .boxes import box_iou, box_iou_np
from .conv import autotune_cpu_convs, speed_up_cpu_training
from .nms import batched_nms, nms, segmented_nms
from .pool import speed_up_cpu_max_pools
from .roi_align import RoIAlign, boxes_to_rois, roi_align


def speed_up_cpu_inference(model) -> dict:
    """In place: 3x3 convs pick ATen's or NNPACK's kernel per input size
    (:func:`autotune_cpu_convs`) and 2x2 max-pools run as strided maxima
    (:func:`speed_up_cpu_max_pools`), both only in CPU inference (autograd off); weights
    and the state dict are untouched. Returns ``{'convs': n, 'max_pools': m}`` changed."""
    return dict(convs=autotune_cpu_convs(model), max_pools=speed_up_cpu_max_pools(model))

__all__ = ['nms', 'batched_nms', 'segmented_nms', 'box_iou', 'box_iou_np', 'roi_align', 'RoIAlign', 'boxes_to_rois',
           'backend', 'ExtensionBuildError', 'autotune_cpu_convs', 'speed_up_cpu_max_pools',
           'speed_up_cpu_inference', 'speed_up_cpu_training']

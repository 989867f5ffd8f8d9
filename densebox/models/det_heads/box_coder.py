"""Box encoding of SSD / Faster R-CNN: centre offsets and log size ratios over variances."""
import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from densebox.registry import TASK_UTILS
from densebox.structures import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh


@TASK_UTILS.register_module()
class DeltaXYWHBoxCoder:
    """Encode boxes relative to anchors as ``((gx-ax)/aw, (gy-ay)/ah, log(gw/aw), log(gh/ah))``
    divided by ``variances`` (SSD: 0.1, 0.1, 0.2, 0.2).

    ``max_ratio`` bounds the decoded log size ratio (log(1000/16), as torchvision and mmdet do)
    so an untrained network cannot produce infinite boxes.
    """

    def __init__(self, variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 max_ratio: float = math.log(1000.0 / 16)):
        self.variances = tuple(float(v) for v in variances)
        self.max_ratio = max_ratio
        self._variance_cache = {}

    def variance_tensor(self, device) -> Tensor:
        """(4,) float32 variances on ``device``, made there once and kept.

        Made from Python scalars by fill kernels, never copied from the host: a
        ``new_tensor(self.variances)`` per call would be a blocking host-to-device copy in
        every CUDA training step and post-processing call.
        """
        device = torch.device(device)
        var = self._variance_cache.get(device)
        if var is None:
            var = torch.cat([torch.full((1,), v, dtype=torch.float32, device=device)
                             for v in self.variances])
            self._variance_cache[device] = var
        return var

    def encode(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        """anchors, boxes: (..., 4) xyxy -> (..., 4) deltas."""
        a = bbox_xyxy_to_cxcywh(anchors.float())
        g = bbox_xyxy_to_cxcywh(boxes.float())
        deltas = torch.cat([(g[..., :2] - a[..., :2]) / a[..., 2:],
                            torch.log(g[..., 2:].clamp(min=1e-6) / a[..., 2:])], -1)
        return deltas / self.variance_tensor(deltas.device)

    def decode(self, anchors: Tensor, deltas: Tensor,
               max_shape: Optional[Tuple[int, int]] = None) -> Tensor:
        """anchors (..., 4) xyxy, deltas (..., 4) -> boxes (..., 4) xyxy.

        ``max_shape`` (h, w) clips the boxes to the input image.
        """
        a = bbox_xyxy_to_cxcywh(anchors.float())
        d = deltas.float() * self.variance_tensor(deltas.device)
        centre = a[..., :2] + d[..., :2] * a[..., 2:]
        size = a[..., 2:] * d[..., 2:].clamp(max=self.max_ratio).exp()
        boxes = bbox_cxcywh_to_xyxy(torch.cat([centre, size], -1))
        if max_shape is not None:
            h, w = max_shape
            boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                                 boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], -1)
        return boxes

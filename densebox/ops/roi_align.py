"""RoIAlign (Mask R-CNN), with the semantics of torchvision.ops.roi_align."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from . import _ext


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f'roi_align: output_size must be an int or (h, w), got {size}')
    return size


def boxes_to_rois(boxes: Tensor | Sequence[Tensor]) -> Tensor:
    """Turn per-image boxes into the (K, 5) ``[batch_idx, x1, y1, x2, y2]`` RoI format.

    Args:
        boxes: a (K, 5) tensor (returned as is) or a list with one (k_i, 4) tensor per image.

    Returns:
        Tensor: (K, 5) RoIs, K = sum k_i, the image index in column 0.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError('roi_align: a rois tensor must be (K, 5) [batch_idx, x1, y1, x2, y2]'
                             f', got {tuple(boxes.shape)}')
        return boxes
    boxes = list(boxes)
    if not boxes:
        raise ValueError('roi_align: got an empty list of boxes (one (k, 4) tensor per image)')
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.size(1) != 4:
            raise ValueError(f'roi_align: boxes[{i}] must be (k, 4), got {tuple(b.shape)}')
    flat = torch.cat(boxes, dim=0)
    counts = torch.tensor([b.size(0) for b in boxes], device=flat.device)
    image = torch.repeat_interleave(torch.arange(len(boxes), device=flat.device), counts)
    return torch.cat([image[:, None].to(flat.dtype), flat], dim=1)


class _RoIAlign(torch.autograd.Function):
    """Extension kernels with autograd; gradients flow to ``input`` only."""

    @staticmethod
    def forward(ctx, ext, input, rois, pooled, spatial_scale, sampling_ratio, aligned):
        ctx.ext = ext
        ctx.params = (pooled, spatial_scale, sampling_ratio, aligned, tuple(input.shape))
        ctx.save_for_backward(rois)
        return ext.roi_align_forward(input, rois, spatial_scale, pooled[0], pooled[1],
                                     sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        pooled, spatial_scale, sampling_ratio, aligned, (n, c, h, w) = ctx.params
        grad_input = ctx.ext.roi_align_backward(grad, rois, spatial_scale, pooled[0], pooled[1],
                                                n, c, h, w, sampling_ratio, aligned)
        return None, grad_input, None, None, None, None, None


def roi_align(input: Tensor, rois: Tensor | Sequence[Tensor], output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """Average of bilinear samples over each bin of each RoI.

    Args:
        input (Tensor): (N, C, H, W) feature map.
        rois (Tensor | list[Tensor]): (K, 5) ``[batch_idx, x1, y1, x2, y2]`` or a list of
            N tensors (k_i, 4) xyxy, in input-image coordinates.
        output_size (int | tuple[int, int]): (PH, PW) bins per RoI.
        spatial_scale (float): feature-map pixels per input-image pixel (e.g. 1/16).
        sampling_ratio (int): samples per bin side; <= 0: ceil(roi size / bins), adaptive.
        aligned (bool): shift boxes by -0.5 pixel (Detectron2); False keeps the legacy
            behaviour (no shift, RoIs at least 1x1).

    Returns:
        Tensor: (K, C, PH, PW) pooled features, differentiable w.r.t. ``input``.
    """
    if not isinstance(input, Tensor) or input.dim() != 4:
        raise ValueError('roi_align: input must be a (N, C, H, W) tensor, got '
                         f'{tuple(input.shape) if isinstance(input, Tensor) else type(input)}')
    if not input.is_floating_point():
        raise TypeError(f'roi_align: input must be floating point, got {input.dtype}')
    pooled = _pair(output_size)
    if min(pooled) <= 0:
        raise ValueError(f'roi_align: output_size must be positive, got {pooled}')
    rois = boxes_to_rois(rois)
    if rois.device != input.device:
        raise ValueError(f'roi_align: input on {input.device} but rois on {rois.device}')
    ext = _ext.extension_for(input.device)
    if ext is None:
        import torchvision
        return torchvision.ops.roi_align(input, rois.to(input.dtype), pooled, spatial_scale,
                                         sampling_ratio, aligned)
    if not rois.is_floating_point() or rois.dtype != input.dtype and input.dtype in (
            torch.float32, torch.float64):
        rois = rois.to(input.dtype)
    return _RoIAlign.apply(ext, input, rois, pooled, float(spatial_scale), int(sampling_ratio),
                           bool(aligned))


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align` (same arguments, fixed at construction)."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = False):
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | Sequence[Tensor]) -> Tensor:
        """input (N, C, H, W), rois (K, 5) or list of (k, 4) -> (K, C, PH, PW)."""
        return roi_align(input, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}')

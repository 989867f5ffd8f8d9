"""SSD default boxes (anchors).

At level k every cell of the feature map gets, in this order (the order of the original
Caffe prior-box layer and of torchvision):

1. a square box of side ``min_sizes[k]``,
2. a square box of side ``sqrt(min_sizes[k] * max_sizes[k])``,
3. for every ratio r in ``ratios[k]``: a box of ``min_size * (sqrt(r), 1/sqrt(r))`` and one of
   ``min_size * (1/sqrt(r), sqrt(r))``,

centred at ``((j + 0.5) * step, (i + 0.5) * step)``.
"""
import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from densebox.registry import TASK_UTILS


@TASK_UTILS.register_module()
class SSDAnchorGenerator:
    """Default boxes of SSD for all levels, in absolute input pixels.

    Args:
        input_size: network input side (300 or 512); used for ``clip``.
        strides: step of each level in pixels, e.g. (8, 16, 32, 64, 100, 300).
        min_sizes / max_sizes: box sizes per level in pixels (METHODS.md lists them).
        ratios: extra aspect ratios per level, e.g. ([2], [2, 3], [2, 3], [2, 3], [2], [2]).
        clip: limit every box's width and height to the input side, centres unchanged (what
            torchvision's ``DefaultBoxGenerator(clip=True)`` does; for SSD300 it changes only
            the two 2:1 boxes of the 1x1 level).
    """

    def __init__(self, input_size: int, strides: Sequence[float], min_sizes: Sequence[float],
                 max_sizes: Sequence[float], ratios: Sequence[Sequence[float]], clip: bool = False):
        if not (len(strides) == len(min_sizes) == len(max_sizes) == len(ratios)):
            raise ValueError('SSDAnchorGenerator: strides, min_sizes, max_sizes and ratios need '
                             f'one entry per level, got {len(strides)}, {len(min_sizes)}, '
                             f'{len(max_sizes)}, {len(ratios)}')
        self.input_size = input_size
        self.strides = [float(s) for s in strides]
        self.clip = clip
        self.base_sizes = [self._base_sizes(mn, mx, r) for mn, mx, r in zip(min_sizes, max_sizes, ratios)]
        if clip:
            self.base_sizes = [sizes.clamp(max=float(input_size)) for sizes in self.base_sizes]
        self._cache = {}

    @staticmethod
    def _base_sizes(min_size: float, max_size: float, ratios: Sequence[float]) -> Tensor:
        """(A, 2) widths and heights of the boxes at one cell."""
        sizes = [(min_size, min_size), (math.sqrt(min_size * max_size),) * 2]
        for r in ratios:
            sizes += [(min_size * math.sqrt(r), min_size / math.sqrt(r)),
                      (min_size / math.sqrt(r), min_size * math.sqrt(r))]
        return torch.tensor(sizes, dtype=torch.float64)

    @property
    def num_base_anchors(self) -> List[int]:
        """Boxes per cell at each level, e.g. [4, 6, 6, 6, 4, 4]."""
        return [len(s) for s in self.base_sizes]

    def grid_anchors(self, featmap_sizes: Sequence[Tuple[int, int]],
                     device='cpu') -> Tensor:
        """All default boxes, (sum_k H_k * W_k * A_k, 4) xyxy, level by level, cell-major."""
        key = (tuple(map(tuple, featmap_sizes)), str(device))
        if key not in self._cache:
            levels = [self._level_anchors(size, stride, base)
                      for size, stride, base in zip(featmap_sizes, self.strides, self.base_sizes)]
            anchors = torch.cat(levels).float()
            self._cache[key] = anchors.to(device)
        return self._cache[key]

    def _level_anchors(self, featmap_size: Tuple[int, int], stride: float, base: Tensor) -> Tensor:
        h, w = featmap_size
        cy, cx = torch.meshgrid((torch.arange(h, dtype=torch.float64) + 0.5) * stride,
                                (torch.arange(w, dtype=torch.float64) + 0.5) * stride, indexing='ij')
        centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2)                 # (HW, 1, 2)
        half = base[None] / 2                                                  # (1, A, 2)
        return torch.cat([centres - half, centres + half], -1).reshape(-1, 4)

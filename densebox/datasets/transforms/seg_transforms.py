"""Geometric transforms for semantic segmentation: the image and every mask move together.

Keys read and written (pipeline results dict, see the contract):
  'img' (H, W, 3) uint8, 'gt_seg_map' (H, W) uint8/int64 and any key named in
  'seg_fields', 'img_shape' (h, w), 'scale_factor' (w_scale, h_scale) cumulative since
  loading, 'pad_shape' (h, w).

Sizes: ``scale`` is (long or w, short or h) as in mmcv/mmseg (``(2048, 1024)`` for
Cityscapes); ``crop_size`` and pad ``size`` are (h, w) as in mmseg's RandomCrop.

Resizing is ``Resize`` of geometric.py (image bilinear; masks nearest at pixel centres, the
sampling grid of cv2's bilinear resize, so a mask pixel always comes from one of the input
pixels blended into the image pixel at the same place). For the deterministic test-time
resize use ``Resize(scale=(2048, 1024), keep_ratio=True)``.
"""
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform

from densebox.registry import TRANSFORMS

from .geometric import Resize


def seg_keys(results: dict) -> List[str]:
    """Mask keys present in ``results``: 'gt_seg_map' plus those in 'seg_fields'."""
    keys = [k for k in results.get('seg_fields', []) if k in results]
    if 'gt_seg_map' in results and 'gt_seg_map' not in keys:
        keys.append('gt_seg_map')
    return keys


@TRANSFORMS.register_module()
class RandomResize(BaseTransform):
    """Resize to a random scale: ``scale`` times a ratio drawn from ``ratio_range``.

    Args:
        scale: base (w, h), e.g. (2048, 1024). With ``keep_ratio`` it is a bound: the image
            is rescaled so that its long side fits max(scale) and its short side min(scale).
        ratio_range: (min, max) of the uniform ratio; the target is (int(w * r), int(h * r)).
            None: ``scale`` must be two (w, h) pairs and each edge bound is drawn uniformly
            between them (mmcv's range mode).
        keep_ratio: keep the aspect ratio (see ``scale``); False resizes to exactly (w, h).
    """

    def __init__(self, scale: Union[Tuple[int, int], Sequence[Tuple[int, int]]],
                 ratio_range: Optional[Tuple[float, float]] = None, keep_ratio: bool = True):
        if ratio_range is not None:
            if len(scale) != 2 or not all(isinstance(s, (int, float)) for s in scale):
                raise ValueError(f'RandomResize: with ratio_range, scale must be one (w, h), '
                                 f'got {scale!r}')
            if not 0 < ratio_range[0] <= ratio_range[1]:
                raise ValueError(f'RandomResize: bad ratio_range {ratio_range!r}')
        elif (len(scale) != 2 or any(not isinstance(s, (tuple, list)) or len(s) != 2
                                     for s in scale)):
            raise ValueError(f'RandomResize: without ratio_range, scale must be two (w, h) '
                             f'bounds, got {scale!r}')
        self.scale = scale
        self.ratio_range = ratio_range
        self.keep_ratio = keep_ratio

    def _random_scale(self) -> Tuple[int, int]:
        """Draw the target (w, h) (a bound when keep_ratio)."""
        if self.ratio_range is not None:
            ratio = np.random.uniform(*self.ratio_range)
            return int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        (w0, h0), (w1, h1) = self.scale
        if self.keep_ratio:
            longs, shorts = sorted((max(w0, h0), max(w1, h1))), sorted((min(w0, h0), min(w1, h1)))
            return (np.random.randint(longs[0], longs[1] + 1),
                    np.random.randint(shorts[0], shorts[1] + 1))
        return (np.random.randint(min(w0, w1), max(w0, w1) + 1),
                np.random.randint(min(h0, h1), max(h0, h1) + 1))

    def transform(self, results: dict) -> dict:
        return Resize(scale=self._random_scale(), keep_ratio=self.keep_ratio)(results)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, ratio_range={self.ratio_range}, '
                f'keep_ratio={self.keep_ratio})')


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Random crop of ``crop_size`` (h, w) that avoids crops dominated by one class.

    Up to 10 random windows are tried; the first in which no single class (ignoring
    ``ignore_index``) covers ``cat_max_ratio`` or more of the labelled pixels, and which
    holds at least two classes, is taken; otherwise the last one. ``cat_max_ratio=1``
    takes the first window. An image smaller than the crop is cropped to its own size along
    that side (pad afterwards with ``SegPad``).

    Args:
        crop_size: (h, w).
        cat_max_ratio: largest share of one class allowed in the crop.
        ignore_index: label not counted in the shares.
    """

    max_tries = 10

    def __init__(self, crop_size: Tuple[int, int], cat_max_ratio: float = 1.0,
                 ignore_index: int = 255):
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f'RandomCrop: crop_size must be (h, w) > 0, got {crop_size!r}')
        self.crop_size = tuple(int(s) for s in crop_size)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _random_window(self, img_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
        """(y1, y2, x1, x2) of a crop window inside an image of ``img_hw``."""
        h = min(self.crop_size[0], img_hw[0])
        w = min(self.crop_size[1], img_hw[1])
        y1 = np.random.randint(0, img_hw[0] - h + 1)
        x1 = np.random.randint(0, img_hw[1] - w + 1)
        return y1, y1 + h, x1, x1 + w

    def _balanced(self, seg: np.ndarray) -> bool:
        """Whether the labelled pixels of ``seg`` hold >= 2 classes, none >= cat_max_ratio."""
        counts = np.bincount(seg.ravel().astype(np.int64), minlength=self.ignore_index + 1)
        if 0 <= self.ignore_index < counts.size:
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return counts.size > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def transform(self, results: dict) -> dict:
        img_hw = results['img'].shape[:2]
        check = self.cat_max_ratio < 1.0 and 'gt_seg_map' in results
        for _ in range(self.max_tries if check else 1):
            y1, y2, x1, x2 = self._random_window(img_hw)
            if not check or self._balanced(results['gt_seg_map'][y1:y2, x1:x2]):
                break
        results['img'] = results['img'][y1:y2, x1:x2].copy()
        for key in seg_keys(results):
            results[key] = results[key][y1:y2, x1:x2].copy()
        results['img_shape'] = (y2 - y1, x2 - x1)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, '
                f'cat_max_ratio={self.cat_max_ratio}, ignore_index={self.ignore_index})')


@TRANSFORMS.register_module()
class SegPad(BaseTransform):
    """Pad the image and masks at the bottom and right.

    To a fixed ``size`` (h, w) (e.g. the crop size, so that every training image in a batch
    has the same shape) or to the next multiple of ``size_divisor``. The image is padded with
    ``pad_val``, masks with ``seg_pad_val`` (ignored by the loss). 'img_shape' keeps the
    unpadded size; 'pad_shape' is the padded one.
    """

    def __init__(self, size: Optional[Tuple[int, int]] = None,
                 size_divisor: Optional[int] = None,
                 pad_val: Union[int, Iterable[int]] = 0, seg_pad_val: int = 255):
        if (size is None) == (size_divisor is None):
            raise ValueError('SegPad: give exactly one of size=(h, w) and size_divisor')
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        if self.size is not None:
            out_h, out_w = self.size
            if h > out_h or w > out_w:
                raise ValueError(f'SegPad: image {h}x{w} is larger than the pad size '
                                 f'{out_h}x{out_w} ({results.get("img_path", "")}); '
                                 'crop or resize it first')
        else:
            d = self.size_divisor
            out_h, out_w = -(-h // d) * d, -(-w // d) * d
        pad = ((0, out_h - h), (0, out_w - w))
        if (out_h, out_w) != (h, w):
            padded = np.empty((out_h, out_w) + img.shape[2:], dtype=img.dtype)
            padded[...] = np.asarray(self.pad_val, dtype=img.dtype)
            padded[:h, :w] = img
            results['img'] = padded
            for key in seg_keys(results):
                results[key] = np.pad(results[key], pad, constant_values=self.seg_pad_val)
        results['pad_shape'] = (out_h, out_w)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, size_divisor={self.size_divisor}, '
                f'pad_val={self.pad_val}, seg_pad_val={self.seg_pad_val})')

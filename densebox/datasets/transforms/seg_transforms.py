"""Geometric transforms for semantic segmentation: the image and every mask move together.

Keys read and written (pipeline results dict, see the contract):
  'img' (H, W, 3) uint8, 'gt_seg_map' (H, W) uint8/int64 and any key named in
  'seg_fields', 'img_shape' (h, w), 'scale_factor' (w_scale, h_scale) cumulative since
  loading, 'pad_shape' (h, w).

Sizes: ``scale`` is (long or w, short or h) as in mmcv/mmseg (``(2048, 1024)`` for
Cityscapes); ``crop_size`` and pad ``size`` are (h, w) as in mmseg's RandomCrop.

Images are resized bilinearly (cv2.INTER_LINEAR). Masks take, for each output pixel, the
label of the input pixel whose centre is nearest to the output pixel's centre
(``src = floor((dst + 0.5) * in / out)``). That is the sampling grid cv2's bilinear resize
uses too, so a mask pixel always comes from one of the input pixels that were blended into
the image pixel at the same place.
"""
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from densebox.registry import TRANSFORMS


def seg_keys(results: dict) -> List[str]:
    """Mask keys present in ``results``: 'gt_seg_map' plus those in 'seg_fields'."""
    keys = [k for k in results.get('seg_fields', []) if k in results]
    if 'gt_seg_map' in results and 'gt_seg_map' not in keys:
        keys.append('gt_seg_map')
    return keys


def resize_nearest(seg: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Nearest-centre resize of a label map (any integer dtype).

    Args:
        seg: (H, W) labels.
        size_hw: output (h, w).
    Returns:
        (h, w) labels of the same dtype.
    """
    in_h, in_w = seg.shape[:2]
    out_h, out_w = size_hw
    rows = np.minimum(((np.arange(out_h) + 0.5) * (in_h / out_h)).astype(np.int64), in_h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * (in_w / out_w)).astype(np.int64), in_w - 1)
    return seg[rows[:, None], cols[None, :]]


def rescale_size(size_hw: Tuple[int, int], scale: Sequence[int]) -> Tuple[int, int]:
    """Keep-ratio size that fits ``scale``: long side <= max(scale), short <= min(scale).

    Args:
        size_hw: the image's (h, w).
        scale: (a, b) in either order, e.g. (2048, 1024).
    Returns:
        (h, w) after rescaling by min(max(scale) / long side, min(scale) / short side),
        rounded half up.
    """
    h, w = size_hw
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def resize_results(results: dict, size_hw: Tuple[int, int]) -> dict:
    """Resize 'img' (bilinear) and the masks (nearest centre) to ``size_hw`` = (h, w).

    Updates 'img_shape' and multiplies 'scale_factor' (w_scale, h_scale) by this resize.
    """
    img = results['img']
    in_h, in_w = img.shape[:2]
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f'resize of a {in_h}x{in_w} image to {out_h}x{out_w} '
                         f'({results.get("img_path", "")})')
    if (out_h, out_w) != (in_h, in_w):
        results['img'] = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        for key in seg_keys(results):
            results[key] = resize_nearest(results[key], (out_h, out_w))
    w_scale, h_scale = results.get('scale_factor', (1.0, 1.0))
    results['scale_factor'] = (w_scale * out_w / in_w, h_scale * out_h / in_h)
    results['img_shape'] = (out_h, out_w)
    return results


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
        target_w, target_h = self._random_scale()
        if self.keep_ratio:
            size_hw = rescale_size(results['img'].shape[:2], (target_w, target_h))
        else:
            size_hw = (target_h, target_w)
        return resize_results(results, size_hw)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, ratio_range={self.ratio_range}, '
                f'keep_ratio={self.keep_ratio})')


@TRANSFORMS.register_module()
class ResizeToScale(BaseTransform):
    """Deterministic resize to ``scale`` (w, h): a keep-ratio bound or the exact size.

    The segmentation test-time resize, e.g. ``ResizeToScale(scale=(2048, 1024))``. Only
    the image (and masks already loaded) is resized; test pipelines load the ground truth
    afterwards so metrics see it at the original resolution.
    """

    def __init__(self, scale: Tuple[int, int], keep_ratio: bool = True):
        if len(scale) != 2:
            raise ValueError(f'ResizeToScale: scale must be (w, h), got {scale!r}')
        self.scale = tuple(scale)
        self.keep_ratio = keep_ratio

    def transform(self, results: dict) -> dict:
        if self.keep_ratio:
            size_hw = rescale_size(results['img'].shape[:2], self.scale)
        else:
            size_hw = (self.scale[1], self.scale[0])
        return resize_results(results, size_hw)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(scale={self.scale}, keep_ratio={self.keep_ratio})'


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
        margin_h = max(img_hw[0] - self.crop_size[0], 0)
        margin_w = max(img_hw[1] - self.crop_size[1], 0)
        y1 = np.random.randint(0, margin_h + 1)
        x1 = np.random.randint(0, margin_w + 1)
        return y1, y1 + min(self.crop_size[0], img_hw[0]), x1, x1 + min(self.crop_size[1],
                                                                          img_hw[1])

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

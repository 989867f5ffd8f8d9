"""Geometric augmentation for detection (and seg maps): zoom-out, SSD crop, resize, flip.

Every transform moves ``img``, ``gt_bboxes`` (N, 4) xyxy float32 and ``gt_seg_map`` (H, W)
together and updates ``img_shape``. Boxes are clipped to the image; a box that becomes
degenerate is dropped together with its ``gt_bboxes_labels`` and ``gt_ignore_flags`` entry.
Randomness comes from ``numpy.random`` so that mmengine's seeding governs it.
"""
from typing import Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms import RandomFlip as MMCVRandomFlip

from ...ops import box_iou_np
from ...registry import TRANSFORMS

INSTANCE_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags')
SEG_IGNORE = 255

_INTERP = dict(nearest=cv2.INTER_NEAREST, bilinear=cv2.INTER_LINEAR, bicubic=cv2.INTER_CUBIC,
               area=cv2.INTER_AREA, lanczos=cv2.INTER_LANCZOS4)


def keep_instances(results: dict, keep: np.ndarray) -> None:
    """Index every per-instance array of ``results`` with the (N,) bool mask ``keep``."""
    for key in INSTANCE_KEYS:
        if key in results:
            results[key] = results[key][keep]


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Clip (N, 4) xyxy boxes to [0, width] x [0, height]."""
    boxes = boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return boxes


def resize_nearest(seg: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) map of any dtype, sampling at pixel centres."""
    h, w = seg.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * (h / height)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (w / width)).astype(np.int64), w - 1)
    return seg[rows[:, None], cols[None, :]]


@TRANSFORMS.register_module()
class Expand(BaseTransform):
    """Zoom out (SSD's "expand"): paste the image at a random place of a larger canvas.

    With probability ``prob`` the canvas is ``ratio`` times the image on each side,
    ``ratio ~ U(ratio_range)``, filled with ``mean`` (RGB); boxes shift with the image and
    the seg map's new area is ``seg_ignore_label``.

    Args:
        mean: RGB fill colour (the normalisation mean, so it becomes 0 after normalising).
        ratio_range: (min, max) side ratio, (1, 4) in SSD.
        prob: probability of expanding.
        seg_ignore_label: fill of ``gt_seg_map`` outside the original image.
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 ratio_range: Tuple[float, float] = (1, 4), prob: float = 0.5,
                 seg_ignore_label: int = SEG_IGNORE):
        if ratio_range[0] < 1 or ratio_range[1] < ratio_range[0]:
            raise ValueError(f'Expand: ratio_range must satisfy 1 <= min <= max, got {ratio_range}')
        self.mean = tuple(mean)
        self.fill = np.clip(np.round(np.asarray(mean, np.float64)), 0, 255).astype(np.uint8)
        self.ratio_range = tuple(ratio_range)
        self.prob = prob
        self.seg_ignore_label = seg_ignore_label

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        h, w = img.shape[:2]
        ratio = np.random.uniform(*self.ratio_range)
        new_h, new_w = int(h * ratio), int(w * ratio)
        top = int(np.random.uniform(0, new_h - h))
        left = int(np.random.uniform(0, new_w - w))
        border = (top, new_h - h - top, left, new_w - w - left)
        canvas = cv2.copyMakeBorder(img, *border, cv2.BORDER_CONSTANT,
                                    value=[int(v) for v in self.fill])
        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]
        if 'gt_bboxes' in results:
            shift = np.array([left, top, left, top], np.float32)
            results['gt_bboxes'] = results['gt_bboxes'] + shift
        seg = results.get('gt_seg_map')
        if seg is not None:
            seg_canvas = np.full((new_h, new_w), self.seg_ignore_label, seg.dtype)
            seg_canvas[top:top + h, left:left + w] = seg  # any dtype, unlike copyMakeBorder
            results['gt_seg_map'] = seg_canvas
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(mean={self.mean}, ratio_range={self.ratio_range}, '
                f'prob={self.prob})')


@TRANSFORMS.register_module()
class MinIoURandomCrop(BaseTransform):
    """SSD's random crop with a minimum-IoU constraint (the Caffe ``batch_sampler`` scheme).

    Samplers: one per threshold of ``min_ious`` plus an unconstrained one. Each sampler draws
    ``max_trials`` candidate patches (sides ~ U(min_crop_size, 1) of the image's, aspect
    h / w in ``aspect_ratio_range``) and keeps its first candidate that qualifies: some
    ground-truth box has IoU >= the threshold with the patch and its centre inside the patch
    (unconstrained: some box centre inside; ``require_all=True``: every box must reach the
    threshold, mmdet's rule). The result is drawn uniformly from the whole image and the
    patches the samplers found, as Caffe SSD does. All candidates are evaluated at once.
    Images without boxes stay whole.

    Boxes whose centre lies inside the patch are kept, shifted and clipped to it; clipped
    boxes under 1 px wide or high are dropped (with their labels and ignore flags).

    Args:
        min_ious: the IoU thresholds, (0.1, 0.3, 0.5, 0.7, 0.9) in SSD.
        min_crop_size: smallest patch side as a fraction of the image side, 0.3 in SSD.
        aspect_ratio_range: allowed patch h / w, (0.5, 2) in SSD.
        max_trials: candidate patches per sampler, 50 in SSD.
        require_all: every box, not just one, must reach the threshold.
    """

    def __init__(self, min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
                 min_crop_size: float = 0.3, aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
                 max_trials: int = 50, require_all: bool = False):
        if not 0 < min_crop_size <= 1:
            raise ValueError(
                f'MinIoURandomCrop: min_crop_size must be in (0, 1], got {min_crop_size}')
        self.min_ious = tuple(min_ious)
        self.min_crop_size = min_crop_size
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.max_trials = max_trials
        self.require_all = require_all
        # IoU threshold of each sampler; 0.0 is the unconstrained one.
        self.thresholds = np.array([*self.min_ious, 0.0], np.float64)

    def _sample_patch(self, boxes: np.ndarray, h: int, w: int):
        """Returns ((x1, y1, x2, y2) int patch, (N,) bool centre-inside mask) or None (whole)."""
        if len(boxes) == 0:
            return None
        m, t = len(self.thresholds), self.max_trials
        pw = np.random.uniform(self.min_crop_size * w, w, (m, t))
        ph = np.random.uniform(self.min_crop_size * h, h, (m, t))
        left = np.random.uniform(0, 1, (m, t)) * (w - pw)
        top = np.random.uniform(0, 1, (m, t)) * (h - ph)
        patches = np.floor(np.stack([left, top, left + pw, top + ph], -1)).reshape(-1, 4)
        pw, ph = patches[:, 2] - patches[:, 0], patches[:, 3] - patches[:, 1]
        ok = ((pw >= 1) & (ph >= 1) & (ph >= self.aspect_ratio_range[0] * pw)
              & (ph <= self.aspect_ratio_range[1] * pw))
        centres = (boxes[:, :2] + boxes[:, 2:]) * 0.5
        inside = ((centres[None] > patches[:, None, :2])
                  & (centres[None] < patches[:, None, 2:])).all(-1)  # (M * T, N)
        iou_ok = box_iou_np(patches, boxes) >= np.repeat(self.thresholds, t)[:, None]
        if self.require_all:
            ok &= iou_ok.all(1) & inside.any(1)
        else:
            ok &= (iou_ok & inside).any(1)
        ok = ok.reshape(m, t)
        found = np.flatnonzero(ok.any(1))
        pick = np.random.randint(len(found) + 1)  # 0 = the whole image
        if pick == 0:
            return None
        sampler = found[pick - 1]
        index = sampler * t + int(np.argmax(ok[sampler]))
        return patches[index].astype(np.int64), inside[index]

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        boxes = results.get('gt_bboxes', np.zeros((0, 4), np.float32))
        sample = self._sample_patch(boxes, h, w)
        if sample is None:
            return results
        (x1, y1, x2, y2), inside = sample
        results['img'] = img[y1:y2, x1:x2].copy()
        results['img_shape'] = results['img'].shape[:2]
        seg = results.get('gt_seg_map')
        if seg is not None:
            results['gt_seg_map'] = seg[y1:y2, x1:x2].copy()
        new_boxes = clip_boxes(boxes - np.array([x1, y1, x1, y1], np.float32), y2 - y1, x2 - x1)
        results['gt_bboxes'] = new_boxes.astype(np.float32)
        wh = new_boxes[:, 2:] - new_boxes[:, :2]
        keep_instances(results, inside & (wh >= 1).all(1))
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(min_ious={self.min_ious}, min_crop_size={self.min_crop_size}, '
            f'aspect_ratio_range={self.aspect_ratio_range}, max_trials={self.max_trials}, '
            f'require_all={self.require_all})')


@TRANSFORMS.register_module()
class Resize(BaseTransform):
    """Resize ``img`` (and ``gt_bboxes``, ``gt_seg_map``) to ``scale``.

    ``keep_ratio=False`` warps to exactly ``scale = (w, h)`` (SSD). ``keep_ratio=True`` scales
    by one factor so that the long side fits ``max(scale)`` and the short side fits
    ``min(scale)`` (an int ``scale`` means a square). Boxes are scaled and clipped to the
    image (boxes left with no area are dropped); seg maps use nearest interpolation
    (sampled at pixel centres, any dtype).
    ``scale_factor`` (w_scale, h_scale) multiplies into any earlier one, so it always maps
    the loaded image to the current one. (Why not mmcv's Resize: it overwrites an earlier
    ``scale_factor`` and keeps boxes a resize left without area.)

    Args:
        scale: (w, h) or int.
        keep_ratio: keep the aspect ratio.
        interpolation: 'bilinear' | 'nearest' | 'bicubic' | 'area' | 'lanczos'.
    """

    def __init__(self, scale: Union[int, Tuple[int, int]], keep_ratio: bool = False,
                 interpolation: str = 'bilinear'):
        if isinstance(scale, int):
            scale = (scale, scale)
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f'Resize: scale must be (w, h) with positive sides, got {scale}')
        if interpolation not in _INTERP:
            raise ValueError(
                f'Resize: interpolation must be one of {list(_INTERP)}, got {interpolation!r}')
        self.scale = tuple(int(s) for s in scale)
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation

    def _target_size(self, h: int, w: int) -> Tuple[int, int]:
        if not self.keep_ratio:
            return self.scale
        factor = min(max(self.scale) / max(h, w), min(self.scale) / min(h, w))
        return max(1, int(w * factor + 0.5)), max(1, int(h * factor + 0.5))

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        new_w, new_h = self._target_size(h, w)
        if (new_w, new_h) != (w, h):
            img = cv2.resize(img, (new_w, new_h), interpolation=_INTERP[self.interpolation])
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        sx, sy = new_w / w, new_h / h
        prev = results.get('scale_factor', (1.0, 1.0))
        results['scale_factor'] = (float(prev[0] * sx), float(prev[1] * sy))
        if 'gt_bboxes' in results:
            boxes = results['gt_bboxes'] * np.array([sx, sy, sx, sy], np.float32)
            boxes = clip_boxes(boxes, new_h, new_w).astype(np.float32)
            results['gt_bboxes'] = boxes
            keep_instances(results, ((boxes[:, 2:] - boxes[:, :2]) > 0).all(1))
        seg = results.get('gt_seg_map')
        if seg is not None and seg.shape[:2] != (new_h, new_w):
            results['gt_seg_map'] = resize_nearest(seg, new_h, new_w)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, keep_ratio={self.keep_ratio}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class RandomFlip(MMCVRandomFlip):
    """mmcv's RandomFlip (``img``, ``gt_bboxes``, ``gt_seg_map``, keypoints; sets ``flip`` and
    ``flip_direction``) with contiguous output arrays.

    mmcv flips with ``np.flip`` views (negative strides), which every later transform and
    ``torch.from_numpy`` in the packers would have to copy or reject; here the copy is made
    once, where the flip happens. Arguments are checked with errors that name them (mmcv
    asserts).

    Args:
        prob: flip probability (or one per direction).
        direction: 'horizontal', 'vertical' or 'diagonal' (or a list, with one prob each).
    """

    def __init__(self, prob: Union[float, Sequence[float]] = 0.5,
                 direction: Union[str, Sequence[str]] = 'horizontal', **kwargs):
        directions = [direction] if isinstance(direction, str) else list(direction)
        bad = [d for d in directions if d not in ('horizontal', 'vertical', 'diagonal')]
        if bad:
            raise ValueError("RandomFlip: direction must be 'horizontal', 'vertical' or "
                             f"'diagonal', got {bad[0]!r}")
        probs = [prob] if isinstance(prob, (int, float)) else (
            list(prob) if isinstance(prob, (list, tuple)) else [None])
        if (any(not isinstance(p, (int, float)) or not 0 <= p <= 1 for p in probs)
                or sum(probs) > 1 or (len(probs) > 1 and len(probs) != len(directions))):
            raise ValueError(f'RandomFlip: prob must be a number in [0, 1], or one per '
                             f'direction summing to at most 1; got prob={prob!r} for '
                             f'direction={direction!r}')
        prob = float(prob) if isinstance(prob, (int, float)) else [float(p) for p in prob]
        super().__init__(prob=prob, direction=direction, **kwargs)

    def _flip(self, results: dict) -> None:
        super()._flip(results)
        for key in ('img', 'gt_seg_map'):
            if results.get(key) is not None:
                results[key] = np.ascontiguousarray(results[key])

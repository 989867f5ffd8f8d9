"""Class colour palettes: RGB uint8, deterministic, visually distinct.

Datasets may ship their own palette (VOC, COCO, Cityscapes) in ``metainfo['palette']``;
:func:`resolve_palette` prefers it and falls back to :func:`get_palette`. A detection data set
without its own palette takes the colours of the segmentation data set with the same class
names (:func:`densebox.datasets.palettes.known_palette`), so a class is drawn in one colour
by boxes and masks.
"""
from typing import Optional, Sequence

import numpy as np

__all__ = ['get_palette', 'resolve_palette']

_GOLDEN = 0.618033988749895  # hue step: consecutive classes land far apart on the hue circle


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N,) hue, saturation, value in [0, 1] -> (N, 3) RGB in [0, 1]."""
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    # rows: for sector 0..5, which of (v, t, p, q) is r, g and b
    choices = np.stack([v, t, p, q], axis=1)  # (N, 4)
    table = np.array([[0, 1, 2], [3, 0, 2], [2, 0, 1], [2, 3, 0], [1, 2, 0], [0, 2, 3]])
    return np.take_along_axis(choices, table[i], axis=1)


def get_palette(num_classes: int) -> np.ndarray:
    """A deterministic palette of ``num_classes`` distinct colours.

    Hues step by the golden ratio; saturation and brightness cycle over three levels so
    that classes whose hues end up close still differ.

    Returns:
        (num_classes, 3) uint8 RGB.
    """
    if num_classes < 0:
        raise ValueError(f'get_palette: num_classes must be >= 0, got {num_classes}')
    k = np.arange(num_classes)
    hue = (0.05 + k * _GOLDEN) % 1.0
    sat = np.array([0.85, 0.65, 1.0])[k % 3]
    val = np.array([0.95, 0.75, 0.6])[(k // 3) % 3]
    return np.round(_hsv_to_rgb(hue, sat, val) * 255).astype(np.uint8)


def resolve_palette(palette: Optional[Sequence[Sequence[int]]], num_classes: int) -> np.ndarray:
    """Validate a user / metainfo palette, or make one.

    Args:
        palette: ``None`` or a sequence of at least ``num_classes`` RGB triples in 0..255
            (e.g. ``dataset.metainfo['palette']``).
        num_classes: C.

    Returns:
        (C', 3) uint8 RGB with C' >= C.
    """
    if palette is None:
        return get_palette(num_classes)
    arr = np.asarray(palette)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f'palette must be a list of RGB triples, got shape {arr.shape}')
    if arr.shape[0] < num_classes:
        raise ValueError(f'palette has {arr.shape[0]} colours but {num_classes} classes')
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f'palette values must be in 0..255, got {arr.min()}..{arr.max()}')
    return arr.astype(np.uint8)

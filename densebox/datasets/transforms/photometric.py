"""Photometric augmentation (pixel values only; boxes and seg maps are untouched)."""
from typing import Any, Dict, Tuple

import albumentations as A
import numpy as np

from ...registry import TRANSFORMS
from .albu import Albu


def scale_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the HSV saturation of an RGB uint8 image by ``factor`` (clipped to 1).

    In HSV, V is the largest channel and S = (V - min) / V; hue is fixed by where each
    channel lies between min and V. Scaling S by f at fixed H and V therefore moves every
    channel towards V: ``x' = V - f (V - x)``, with f lowered per pixel to ``V / (V - min)``
    where S would pass 1 (the darkest channel reaches 0). This is the same arithmetic as
    converting to HSV, scaling S, clipping and converting back (Caffe SSD's
    ``AdjustSaturation``, on 8-bit HSV; mmdetection's ``PhotoMetricDistortion``, on float
    HSV), computed in float without the round trip and rounded once.

    Args:
        img: (H, W, 3) uint8 RGB (any channel order works: only max and min matter).
        factor: >= 0; 0 gives the grey image of the V channel, 1 the input.
    Returns:
        (H, W, 3) uint8.
    """
    x = img.astype(np.float32)
    v = x.max(axis=2, keepdims=True)
    spread = v - x.min(axis=2, keepdims=True)
    with np.errstate(divide='ignore', invalid='ignore'):
        limit = np.where(spread > 0, v / spread, np.inf)   # S reaches 1 at this factor
    f = np.minimum(np.float32(factor), limit)
    out = v - f * (v - x)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class HSVSaturation(A.ImageOnlyTransform):
    """albumentations transform: :func:`scale_saturation` by a factor ~ U(saturation_range)."""

    def __init__(self, saturation_range: Tuple[float, float] = (0.5, 1.5), p: float = 0.5):
        super().__init__(p=p)
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))

    def get_params(self) -> Dict[str, Any]:
        return {'factor': self.py_random.uniform(*self.saturation_range)}

    def apply(self, img: np.ndarray, factor: float = 1.0, **params) -> np.ndarray:
        return scale_saturation(img, factor)

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ('saturation_range',)


def _ssd_distortion_cfgs(brightness_delta: float, contrast_range: Tuple[float, float],
                         saturation_range: Tuple[float, float], hue_delta: float,
                         prob: float) -> list:
    """albumentations configs for SSD's colour distortion (see PhotoMetricDistortion)."""
    def brightness():
        return dict(type='RandomBrightnessContrast', p=prob, brightness_by_max=True,
                    brightness_limit=(-brightness_delta / 255.0, brightness_delta / 255.0),
                    contrast_limit=(0.0, 0.0))

    def contrast():
        return dict(type='RandomBrightnessContrast', p=prob, brightness_limit=(0.0, 0.0),
                    contrast_limit=(contrast_range[0] - 1.0, contrast_range[1] - 1.0))

    def saturation():  # in HSV, as Caffe SSD and mmdetection (not ColorJitter's grey blend)
        return HSVSaturation(tuple(saturation_range), p=prob)

    def hue():
        return dict(type='ColorJitter', p=prob, brightness=(1.0, 1.0), contrast=(1.0, 1.0),
                    saturation=(1.0, 1.0), hue=(-hue_delta / 360.0, hue_delta / 360.0))

    contrast_first = dict(type='Sequential', p=1.0, transforms=[contrast(), saturation(), hue()])
    contrast_last = dict(type='Sequential', p=1.0, transforms=[saturation(), hue(), contrast()])
    return [brightness(), dict(type='OneOf', p=1.0, transforms=[contrast_first, contrast_last])]


@TRANSFORMS.register_module()
class PhotoMetricDistortion(Albu):
    """SSD's colour distortion on the RGB uint8 ``img``.

    Brightness first, then with equal chance either contrast -> saturation -> hue or
    saturation -> hue -> contrast (the two orders of the SSD Caffe data layer); each step
    applies with probability ``prob``. Built on albumentations:

    - brightness: ``img + delta``, delta ~ U(-brightness_delta, brightness_delta) grey levels
      (``RandomBrightnessContrast`` with ``brightness_by_max``);
    - contrast: ``img * alpha``, alpha ~ U(contrast_range) (``RandomBrightnessContrast``);
    - saturation: HSV saturation times a factor ~ U(saturation_range), clipped to 1
      (:func:`scale_saturation`; Caffe SSD and mmdetection scale S in HSV, where
      torchvision's and albumentations' ``ColorJitter`` blend with the grey image);
    - hue: rotate hue by ~ U(-hue_delta, hue_delta) degrees (``ColorJitter``; degrees as in
      mmdetection).

    Values are clipped to 0..255 after every step. A step whose range is the identity
    (delta 0 or range (1, 1)) changes nothing.

    Args:
        brightness_delta: grey levels, 32 in SSD.
        contrast_range: multiplicative factor range, (0.5, 1.5) in SSD.
        saturation_range: multiplicative factor range, (0.5, 1.5) in SSD.
        hue_delta: degrees, 18 in SSD.
        prob: probability of each step, 0.5 in SSD.
    """

    def __init__(self,
                 brightness_delta: float = 32,
                 contrast_range: Tuple[float, float] = (0.5, 1.5),
                 saturation_range: Tuple[float, float] = (0.5, 1.5),
                 hue_delta: float = 18,
                 prob: float = 0.5):
        if not 0 <= hue_delta <= 180:
            raise ValueError(
                f'PhotoMetricDistortion: hue_delta must be in [0, 180] degrees, got {hue_delta}')
        if min(contrast_range) < 0 or min(saturation_range) < 0:
            raise ValueError(
                'PhotoMetricDistortion: contrast_range and saturation_range must be >= 0')
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta
        self.prob = prob
        super().__init__(_ssd_distortion_cfgs(brightness_delta, self.contrast_range,
                                              self.saturation_range, hue_delta, prob))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(brightness_delta={self.brightness_delta}, '
                f'contrast_range={self.contrast_range}, saturation_range={self.saturation_range}, '
                f'hue_delta={self.hue_delta}, prob={self.prob})')

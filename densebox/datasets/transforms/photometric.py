"""Photometric augmentation (pixel values only; boxes and seg maps are untouched)."""
from typing import Tuple

from ...registry import TRANSFORMS
from .albu import Albu


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

    def saturation():
        return dict(type='ColorJitter', p=prob, brightness=(1.0, 1.0), contrast=(1.0, 1.0),
                    saturation=tuple(saturation_range), hue=(0.0, 0.0))

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
    - saturation: blend with the grey image by a factor ~ U(saturation_range) (``ColorJitter``);
    - hue: rotate hue by ~ U(-hue_delta, hue_delta) degrees (``ColorJitter``).

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

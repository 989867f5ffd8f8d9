"""Centre crop for evaluation protocols that score a square crop of each image (IIC, STEGO,
ReCo: shorter side resized to 320, then the central 320 x 320)."""
from typing import Tuple, Union

from mmcv.transforms import BaseTransform

from densebox.registry import TRANSFORMS

__all__ = ['CenterCrop']


@TRANSFORMS.register_module()
class CenterCrop(BaseTransform):
    """Cut the central ``crop_size`` (h, w) out of ``img`` and ``gt_seg_map``.

    Args:
        crop_size: (h, w) or an int for a square; an image smaller than it is left as it is
            along that side.
        as_original: make the crop the image the metric compares with (``ori_shape`` =
            the crop), as protocols that evaluate the crop do; predictions are then returned
            for the crop.
    """

    def __init__(self, crop_size: Union[int, Tuple[int, int]], as_original: bool = True):
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f'CenterCrop: crop_size must be (h, w) >= 1, got {crop_size}')
        self.crop_size = tuple(int(c) for c in crop_size)
        self.as_original = bool(as_original)

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        top, left = (h - ch) // 2, (w - cw) // 2
        results['img'] = img[top:top + ch, left:left + cw]
        if results.get('gt_seg_map') is not None:
            seg = results['gt_seg_map']
            if seg.shape[:2] != (h, w):
                raise ValueError(f'CenterCrop: gt_seg_map {seg.shape[:2]} and img {(h, w)} of '
                                 f'{results.get("img_path")} differ; load the annotations '
                                 'before resizing')
            results['gt_seg_map'] = seg[top:top + ch, left:left + cw]
        results['img_shape'] = (ch, cw)
        if self.as_original:
            results['ori_shape'] = (ch, cw)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, '
                f'as_original={self.as_original})')

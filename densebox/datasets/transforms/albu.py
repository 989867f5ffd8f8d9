"""Bridge from the densebox results dict to an albumentations ``Compose``."""
import copy
import random
from typing import Any, Optional, Sequence, Union

import albumentations as A
import numpy as np
from mmcv.transforms import BaseTransform

from ...registry import TRANSFORMS

# Per-instance arrays that follow the boxes (albumentations "label fields").
INSTANCE_FIELDS = ('gt_bboxes_labels', 'gt_ignore_flags')

DEFAULT_BBOX_PARAMS = dict(format='pascal_voc', min_width=1.0, min_height=1.0, clip=True)


def build_albu(cfg: Union[dict, A.BasicTransform, A.BaseCompose]):
    """An albumentations transform from ``dict(type='Name', **kwargs)`` (nested
    ``transforms=[...]`` for ``OneOf`` / ``Sequential`` / ...), or an instance as is."""
    if not isinstance(cfg, dict):
        return cfg
    cfg = copy.deepcopy(cfg)
    name = cfg.pop('type', None)
    cls = getattr(A, name, None) if isinstance(name, str) else None
    if cls is None:
        raise KeyError(f'Albu: {name!r} is not an albumentations transform')
    if 'transforms' in cfg:
        cfg['transforms'] = [build_albu(t) for t in cfg['transforms']]
    return cls(**cfg)


def _is_pixel_only(transform) -> bool:
    if isinstance(transform, A.BaseCompose):
        return all(_is_pixel_only(t) for t in transform.transforms)
    return isinstance(transform, A.ImageOnlyTransform)


@TRANSFORMS.register_module()
class Albu(BaseTransform):
    """Run albumentations transforms on ``img``, ``gt_bboxes`` and ``gt_seg_map``.

    Boxes go in as ``pascal_voc`` (absolute xyxy) with ``gt_bboxes_labels`` and
    ``gt_ignore_flags`` as label fields, so a box removed by a crop loses its label and flag
    too. ``img_shape`` is updated. Randomness is drawn from ``numpy.random`` (the
    albumentations generators are reseeded from it on every call), so mmengine's seeding and
    per-worker seeds govern it.

    Args:
        transforms: albumentations transforms, as dicts (``dict(type='HorizontalFlip', p=0.5)``)
            or instances.
        bbox_params: ``A.BboxParams`` keyword arguments; default ``pascal_voc`` format,
            clipped to the image, boxes under 1 px wide or high dropped.
        p: probability of running the whole composition.
    """

    def __init__(self, transforms: Sequence[Union[dict, Any]], bbox_params: Optional[dict] = None,
                 p: float = 1.0):
        self.transform_cfgs = list(transforms)
        built = [build_albu(t) for t in self.transform_cfgs]
        self.pixel_only = all(_is_pixel_only(t) for t in built)
        params = dict(DEFAULT_BBOX_PARAMS, **(bbox_params or {}))
        params['label_fields'] = list(INSTANCE_FIELDS)
        self.bbox_params = params
        self._py_random = random.Random(0)
        if self.pixel_only:
            self.aug = A.Compose(built, p=p)
        else:
            self.aug = A.Compose(built, bbox_params=A.BboxParams(**params), p=p)

    def _reseed(self) -> None:
        # One generator pair shared by the whole composition, seeded from numpy.random
        # (cheaper than ``set_random_seed``, which builds a pair per transform).
        seed = int(np.random.randint(0, 2**31 - 1))
        self._py_random.seed(seed)
        self.aug.set_random_state(np.random.Generator(np.random.PCG64(seed)), self._py_random)

    def transform(self, results: dict) -> dict:
        self._reseed()
        img = results['img']
        if self.pixel_only:
            results['img'] = self.aug(image=img)['image']
            return results

        data = dict(image=img)
        num = 0
        if 'gt_bboxes' in results:
            boxes = np.asarray(results['gt_bboxes'], np.float32).reshape(-1, 4)
            num = len(boxes)
        else:
            boxes = np.zeros((0, 4), np.float32)
        data['bboxes'] = boxes
        for key, dtype in zip(INSTANCE_FIELDS, (np.int64, bool)):
            data[key] = np.asarray(results.get(key, np.zeros(num, dtype)), dtype).reshape(-1)
            if len(data[key]) != num:
                raise ValueError(f'Albu: {key} has {len(data[key])} entries for {num} boxes '
                                 f'(image {results.get("img_path")})')
        if results.get('gt_seg_map') is not None:
            data['mask'] = results['gt_seg_map']

        out = self.aug(**data)
        results['img'] = out['image']
        results['img_shape'] = out['image'].shape[:2]
        if 'gt_bboxes' in results:
            results['gt_bboxes'] = np.asarray(out['bboxes'], np.float32).reshape(-1, 4)
            for key, dtype in zip(INSTANCE_FIELDS, (np.int64, bool)):
                if key in results:
                    results[key] = np.asarray(out[key], dtype).reshape(-1)
        if 'mask' in data:
            results['gt_seg_map'] = out['mask']
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(transforms={self.transform_cfgs})'


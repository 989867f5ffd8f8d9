"""Shared behaviour of the detection data sets: metainfo clean-up, path checks, filtering.

A detection data set's ``load_data_list`` returns one dict per image::

    {'img_path': str, 'img_id': int | str, 'height': int, 'width': int,
     'instances': [{'bbox': [x1, y1, x2, y2], 'bbox_label': int, 'ignore_flag': 0 | 1}, ...]}

with boxes in absolute pixels of the stored image (xyxy, float) and 0-based labels.
"""
import colorsys
import os.path as osp
from typing import List

import numpy as np

from mmengine.dataset import BaseDataset

from ..registry import TRANSFORMS

README_HINT = 'See data/README.md in the densebox repository for the expected layout.'


def require_path(path: str, what: str) -> None:
    """Raise FileNotFoundError naming ``path`` (and what it should be) if it does not exist."""
    if not path or not osp.exists(path):
        raise FileNotFoundError(
            f'{what} not found: {path!r} (absolute: {osp.abspath(path or ".")!r}). '
            f'{README_HINT}')


def make_palette(num_classes: int) -> List[tuple]:
    """``num_classes`` distinct, deterministic RGB colours (golden-ratio hue steps)."""
    palette = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        sat = 0.65 + 0.35 * ((i // 7) % 2)
        val = 0.95 - 0.3 * ((i // 3) % 2)
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        palette.append((int(r * 255), int(g * 255), int(b * 255)))
    return palette


def build_pipeline(pipeline) -> list:
    """Build transform configs with densebox's TRANSFORMS registry, so that a data set made
    in plain Python (no ``default_scope='densebox'``) still finds densebox's transforms."""
    return [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in (pipeline or [])]


class BaseDetDataset(BaseDataset):
    """mmengine ``BaseDataset`` with the detection conventions of densebox.

    - ``metainfo['classes']`` is always a tuple of str and ``metainfo['palette']`` a list of
      RGB tuples of the same length (regenerated when a user gives a class subset without a
      matching palette), so that ``ConcatDataset`` sees equal metainfo for equal classes.
    - ``filter_cfg=dict(filter_empty_gt=True, min_size=32)`` drops, outside test mode, images
      without any annotated instance (ignored ones count as annotated, as in mmdet) and images
      whose shorter side is below ``min_size``.
    - ``pipeline`` entries are built with densebox's TRANSFORMS registry.
    """

    METAINFO: dict = dict(classes=(), palette=[])

    def __init__(self, *args, pipeline=(), **kwargs):
        super().__init__(*args, pipeline=build_pipeline(pipeline), **kwargs)

    @classmethod
    def _load_metainfo(cls, metainfo=None) -> dict:
        meta = super()._load_metainfo(metainfo)
        classes = meta.get('classes') or ()
        if isinstance(classes, str):
            classes = (classes, )
        classes = tuple(str(c) for c in classes)
        if len(set(classes)) != len(classes):
            raise ValueError(f'metainfo["classes"] has duplicate names: {classes}')
        meta['classes'] = classes
        palette = meta.get('palette')
        if palette is None or len(palette) != len(classes):
            # the colours of the segmentation data set of these classes (VOC, shapes), so that
            # boxes and masks of a class look the same; else generated ones
            from .palettes import known_palette
            meta['palette'] = known_palette(classes) or make_palette(len(classes))
        else:
            meta['palette'] = [tuple(int(v) for v in color) for color in palette]
        return meta

    def _serialize_data(self):
        # mmengine cannot serialise an empty list (np.concatenate of nothing).
        if not self.data_list:
            return np.zeros(0, np.uint8), np.zeros(0, np.int64)
        return super()._serialize_data()

    def filter_data(self) -> List[dict]:
        """Apply ``filter_cfg`` (see the class docstring); test mode keeps every image.

        An annotation file without images, and a training set that ``filter_cfg`` empties,
        are errors that say why (mmengine's sampler would divide by zero later).
        """
        name = f'{type(self).__name__}({self.ann_file})'
        if not self.data_list:
            raise ValueError(f'{name}: the annotation file lists no images; check that it is '
                             f'the right file (and ann_file / data_root). {README_HINT}')
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        unknown = set(self.filter_cfg) - {'filter_empty_gt', 'min_size'}
        if unknown:
            raise KeyError(f'{type(self).__name__}: unknown filter_cfg keys {sorted(unknown)}; '
                           "expected 'filter_empty_gt' and/or 'min_size'")
        filter_empty = bool(self.filter_cfg.get('filter_empty_gt', False))
        min_size = float(self.filter_cfg.get('min_size', 0))
        empty = [len(info['instances']) == 0 for info in self.data_list]
        small = [min(info['width'], info['height']) < min_size for info in self.data_list]
        kept = [info for info, e, s in zip(self.data_list, empty, small)
                if not (filter_empty and e) and not s]
        if not kept:
            raise ValueError(
                f'{name}: filter_cfg={dict(self.filter_cfg)} drops all {len(self.data_list)} '
                f'images ({sum(empty)} have no box of metainfo["classes"], {sum(small)} have a '
                f'side under min_size={min_size:g}); there is nothing to train on. Check the '
                'classes and the annotation file, or relax filter_cfg.')
        return kept

    def get_cat_ids(self, idx: int) -> List[int]:
        """Labels of the instances of image ``idx`` (used by class-aware samplers)."""
        return [inst['bbox_label'] for inst in self.get_data_info(idx)['instances']]

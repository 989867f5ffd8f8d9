"""Semantic segmentation on the synthetic shapes data (densebox.datasets.shapes).

Layout written by ``ensure_shapes(root)`` / ``generate_shapes``::

    data/shapes/
      images/{train,val}/<split>_<index>.jpg
      masks/{train,val}/<split>_<index>.png    uint8: 0 = background, k + 1 = SHAPES_CLASSES[k]

so the segmentation classes are ``('background',) + SHAPES_CLASSES`` with the mask values as
indices directly.
"""
from typing import Optional

from densebox.registry import DATASETS

from .base_seg import BaseSegDataset
from .shapes import SHAPES_CLASSES, ensure_shapes
from .voc_seg import voc_colormap

SHAPES_SEG_CLASSES = ('background',) + tuple(SHAPES_CLASSES)


@DATASETS.register_module()
class ShapesSegDataset(BaseSegDataset):
    """The shapes images with their semantic masks.

    Args:
        generate: make the data under ``data_root`` first if it is missing or was made with
            other generator settings (``ensure_shapes``; safe with several processes).
        generate_cfg: keyword arguments of ``ensure_shapes`` (num_train, num_val, img_size,
            seed, ...); default: its defaults.
        Other arguments: as ``BaseSegDataset``; the default prefix is the train split.
    """

    METAINFO = dict(classes=SHAPES_SEG_CLASSES, palette=voc_colormap(len(SHAPES_SEG_CLASSES)))

    def __init__(self, data_root: str = 'data/shapes',
                 data_prefix: Optional[dict] = None,
                 img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 generate: bool = False, generate_cfg: Optional[dict] = None, **kwargs):
        if generate:
            ensure_shapes(data_root, **(generate_cfg or {}))
        if data_prefix is None:
            data_prefix = dict(img_path='images/train', seg_map_path='masks/train')
        super().__init__(data_root=data_root, data_prefix=data_prefix, img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, **kwargs)

"""Semantic segmentation data set over an image folder and a mask folder.

Layout (``data_prefix`` paths are relative to ``data_root`` unless absolute)::

    data_root/
      <img_path>/[sub/dirs/]<name><img_suffix>        e.g. JPEGImages/2007_000032.jpg
      <seg_map_path>/[sub/dirs/]<name><seg_map_suffix> e.g. SegmentationClass/2007_000032.png

Samples are the images found under ``img_path`` (recursively, sorted), or the names listed
one per line in ``ann_file`` (e.g. VOC's ``ImageSets/Segmentation/train.txt``). Each image
must have its mask; a missing mask is an error that names both paths.

Masks hold class indices (uint8 png). ``reduce_zero_label=True`` marks data sets whose 0
means "other" (ADE20K): the loader maps 0 -> 255 (ignore) and k -> k - 1. Passing
``metainfo=dict(classes=(...))`` with a subset of the data set's classes trains on that
subset: ``label_map`` sends each kept class to its index in the new tuple and every other
class to 255.
"""
import copy
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.dataset import BaseDataset

from densebox.registry import DATASETS
from .base_det import build_pipeline

README_HINT = 'See data/README.md for how to download and lay out this data set.'


@DATASETS.register_module()
class BaseSegDataset(BaseDataset):
    """Images and their semantic masks, paired by file name.

    Args:
        ann_file: optional text file of sample names (relative to ``data_root``), one per
            line, without folder prefix and suffix. Empty: every image under ``img_path``.
        img_suffix: image file ending, e.g. ``'.jpg'`` or ``'_leftImg8bit.png'``.
        seg_map_suffix: mask file ending, e.g. ``'.png'``.
        metainfo: overrides of ``METAINFO``; ``classes`` may name a subset (see above).
        data_root: root folder of the data set.
        data_prefix: ``dict(img_path=..., seg_map_path=...)``. Without ``seg_map_path`` the
            samples have no masks (inference on an image folder).
        reduce_zero_label: whether mask value 0 is "ignore" and the classes start at 1.
        ignore_index: mask value ignored in loss and metrics.
        Other arguments: as mmengine's ``BaseDataset``.

    Every ``data_list`` entry: ``{'img_path', 'img_id', 'seg_map_path', 'reduce_zero_label',
    'label_map', 'num_classes', 'ignore_index', 'seg_fields': []}``; ``LoadAnnotations``
    raises, naming the mask and the value, when a mask holds a value that is neither a class
    index (below ``num_classes``, after ``reduce_zero_label`` and ``label_map``) nor
    ``ignore_index``.
    """

    METAINFO: dict = dict(classes=(), palette=[])

    def __init__(self,
                 ann_file: str = '',
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 metainfo: Optional[dict] = None,
                 data_root: str = '',
                 data_prefix: Optional[dict] = None,
                 reduce_zero_label: bool = False,
                 ignore_index: int = 255,
                 filter_cfg: Optional[dict] = None,
                 indices=None,
                 serialize_data: bool = True,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 max_refetch: int = 1000):
        self.img_suffix = img_suffix
        self.seg_map_suffix = seg_map_suffix
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index
        if data_prefix is None:
            data_prefix = dict(img_path='', seg_map_path='')
        # Must exist before BaseDataset.__init__, which calls load_data_list().
        self.label_map = self.get_label_map(metainfo)
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=dict(data_prefix), filter_cfg=filter_cfg, indices=indices,
                         serialize_data=serialize_data, pipeline=build_pipeline(pipeline),
                         test_mode=test_mode, lazy_init=lazy_init, max_refetch=max_refetch)
        self._metainfo.update(label_map=self.label_map, reduce_zero_label=reduce_zero_label,
                              palette=self._subset_palette(metainfo))

    # ------------------------------------------------------------------ metainfo
    @classmethod
    def get_label_map(cls, metainfo: Optional[dict]) -> Optional[Dict[int, int]]:
        """Map from the data set's class indices to those of ``metainfo['classes']``.

        Returns None when the classes are the data set's own (or not given). Otherwise a
        dict old index -> new index, with 255 for classes that are not kept.
        """
        old_classes = tuple(cls.METAINFO.get('classes', ()))
        if not metainfo or 'classes' not in metainfo or not old_classes:
            return None
        new_classes = tuple(metainfo['classes'])
        if new_classes == old_classes:
            return None
        unknown = [c for c in new_classes if c not in old_classes]
        if unknown:
            raise ValueError(f'{cls.__name__}: metainfo classes {unknown} are not classes of '
                             f'this data set; known classes: {old_classes}')
        return {i: (new_classes.index(c) if c in new_classes else 255)
                for i, c in enumerate(old_classes)}

    def _subset_palette(self, metainfo: Optional[dict]) -> list:
        """The palette for the (possibly subset) classes: kept colours follow their class."""
        palette = list(self._metainfo.get('palette', []))
        if metainfo and 'palette' in metainfo:
            return palette
        old_palette = list(self.METAINFO.get('palette', []))
        if self.label_map is not None and old_palette:
            new = [None] * len(self._metainfo['classes'])
            for old, idx in self.label_map.items():
                if idx != 255:
                    new[idx] = tuple(old_palette[old])
            return new
        return palette

    # ------------------------------------------------------------------ data list
    def load_data_list(self) -> List[dict]:
        """Pair every image with its mask (see the class docstring)."""
        img_dir = self.data_prefix.get('img_path', '')
        seg_dir = self.data_prefix.get('seg_map_path', None)
        name = type(self).__name__
        if self.data_root and not osp.isdir(self.data_root):
            raise FileNotFoundError(f'{name}: data root {osp.abspath(self.data_root)!r} does '
                                    f'not exist. {README_HINT}')
        if not osp.isdir(img_dir):
            raise FileNotFoundError(f'{name}: image folder {osp.abspath(img_dir)!r} does not '
                                    f'exist. {README_HINT}')
        if seg_dir is not None and not osp.isdir(seg_dir):
            raise FileNotFoundError(f'{name}: mask folder {osp.abspath(seg_dir)!r} does not '
                                    f'exist. {README_HINT}')
        names = self._list_names(img_dir)
        self.check_seg_maps(names, img_dir, seg_dir)
        # LoadAnnotations checks every loaded mask against these (values 0..C-1 or ignore).
        num_classes = len(self._metainfo.get('classes') or ()) or None
        data_list = []
        for stem in names:
            info = dict(img_path=osp.join(img_dir, stem + self.img_suffix),
                        img_id=osp.basename(stem),
                        reduce_zero_label=self.reduce_zero_label,
                        label_map=copy.copy(self.label_map),
                        num_classes=num_classes, ignore_index=self.ignore_index,
                        seg_fields=[])
            if seg_dir is not None:
                info['seg_map_path'] = osp.join(seg_dir, stem + self.seg_map_suffix)
            data_list.append(info)
        return data_list

    def _list_names(self, img_dir: str) -> List[str]:
        """Sample names relative to ``img_dir`` without suffix, from ann_file or the folder."""
        if self.ann_file:
            if not osp.isfile(self.ann_file):
                raise FileNotFoundError(f'{type(self).__name__}: split file '
                                        f'{osp.abspath(self.ann_file)!r} does not exist. '
                                        f'{README_HINT}')
            with open(self.ann_file) as f:
                names = [line.strip() for line in f if line.strip()]
            missing = [n for n in names
                       if not osp.isfile(osp.join(img_dir, n + self.img_suffix))]
            if missing:
                raise FileNotFoundError(
                    f'{type(self).__name__}: {len(missing)} images listed in {self.ann_file!r} '
                    f'are missing, e.g. {osp.join(img_dir, missing[0] + self.img_suffix)!r}')
            return names
        names = []
        for root, dirs, files in os.walk(img_dir, followlinks=True):
            dirs.sort()
            rel = osp.relpath(root, img_dir)
            for fname in sorted(files):
                if fname.endswith(self.img_suffix):
                    stem = fname[:len(fname) - len(self.img_suffix)]
                    names.append(stem if rel == '.' else osp.join(rel, stem))
        if not names:
            raise FileNotFoundError(f'{type(self).__name__}: no "*{self.img_suffix}" images '
                                    f'under {osp.abspath(img_dir)!r}. {README_HINT}')
        return names

    def check_seg_maps(self, names: List[str], img_dir: str, seg_dir: Optional[str]) -> None:
        """Raise if an image has no mask, naming the image and the expected mask path."""
        if seg_dir is None:
            return
        for stem in names:
            seg_path = osp.join(seg_dir, stem + self.seg_map_suffix)
            if not osp.isfile(seg_path):
                raise self.missing_seg_map_error(osp.join(img_dir, stem + self.img_suffix),
                                                 seg_path)

    def missing_seg_map_error(self, img_path: str, seg_map_path: str) -> Exception:
        """The error for an image without mask; data sets override it with advice."""
        return FileNotFoundError(f'{type(self).__name__}: image {img_path!r} has no mask: '
                                 f'expected {seg_map_path!r}. {README_HINT}')

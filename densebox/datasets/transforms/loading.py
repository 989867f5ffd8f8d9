"""Loading transforms: image file -> RGB array, data-list instances -> ground-truth arrays."""
import io
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmengine.logging import print_log
from PIL import Image

from ...registry import TRANSFORMS
from .image_decode import (EXIF_POLICIES, decode_rgb, decode_stored_rgb,  # noqa: F401
                           exif_orientation, orient_like_annotation)


def _to_rgb3(img: np.ndarray, source: str) -> np.ndarray:
    """(H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4) uint8 -> (H, W, 3) uint8 (alpha dropped)."""
    if img.dtype != np.uint8:
        raise TypeError(f'{source}: expected a uint8 image, got dtype {img.dtype}')
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f'{source}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, '
                         f'got shape {img.shape}')
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'{source}: the image array is empty (shape {img.shape})')
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def check_seg_values(seg: np.ndarray, num_classes: Optional[int], ignore_index: int,
                     path: str, reduce_zero_label: bool = False) -> None:
    """Raise a ``ValueError`` naming ``path`` and the value if the (H, W) class map ``seg``
    holds a value that is neither below ``num_classes`` nor ``ignore_index`` (no check when
    ``num_classes`` is None)."""
    if num_classes is None or seg.size == 0 or int(seg.max()) < num_classes:
        return
    values, counts = np.unique(seg[seg >= num_classes], return_counts=True)
    bad = [(int(v), int(c)) for v, c in zip(values, counts) if v != ignore_index]
    if not bad:
        return
    value, count = bad[0]
    stored = f' (stored as {value + 1} before reduce_zero_label)' if reduce_zero_label else ''
    others = f'; other such values: {[v for v, _ in bad[1:]]}' if len(bad) > 1 else ''
    raise ValueError(
        f'segmentation map {path!r} has the value {value}{stored} at {count} pixels, which is '
        f'neither a class index of the data set ({num_classes} classes: 0..{num_classes - 1}) '
        f'nor its ignore index {ignore_index}{others}. Fix the mask, or make the data set\'s '
        'classes / reduce_zero_label match how its masks are coded.')


def read_bytes(path: str, backend_args: Optional[dict] = None) -> bytes:
    """Bytes of ``path`` through mmengine's file backends; errors name the path."""
    try:
        return fileio.get(path, backend_args=backend_args)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'image file not found: {path!r}') from err
    except IsADirectoryError as err:
        raise IsADirectoryError(f'{path!r} is a directory, not an image file') from err
    except OSError as err:
        raise OSError(f'cannot read image file {path!r}: {err}') from err


@TRANSFORMS.register_module()
class LoadImageFromFile(BaseTransform):
    """Read ``results['img_path']`` as an RGB uint8 (H, W, 3) array.

    Grey images become 3 identical channels, an alpha channel is dropped and 16-bit images
    keep their high byte. The EXIF orientation follows ``exif_orientation`` (see
    :mod:`densebox.datasets.transforms.image_decode`): by default it is applied unless the
    annotation's stated size (``results['height']`` / ``results['width']``, set by the
    detection data sets from the COCO json or the VOC ``<size>``) matches only the stored
    pixels, so that boxes stay on their objects; a stated size that the image does not have
    is an error naming the file and both sizes. When ``img_path`` is None and
    ``results['img']`` holds an array already (the inference API), that array is taken as
    RGB and only normalised to (H, W, 3) uint8.

    Adds: ``img`` (H, W, 3) uint8, ``img_shape`` and ``ori_shape`` (H, W).

    Args:
        backend_args: mmengine file backend arguments (None: local files).
        exif_orientation: ``'auto'`` (default), ``'apply'`` or ``'ignore'``.
    """

    def __init__(self, backend_args: Optional[dict] = None, exif_orientation: str = 'auto'):
        if exif_orientation not in EXIF_POLICIES:
            raise ValueError(f'LoadImageFromFile: exif_orientation must be one of '
                             f'{EXIF_POLICIES}, got {exif_orientation!r}')
        self.backend_args = backend_args
        self.exif_orientation = exif_orientation
        self._told_stored_pixels = False

    def transform(self, results: dict) -> dict:
        path = results.get('img_path')
        if path is None:
            if not isinstance(results.get('img'), np.ndarray):
                raise KeyError("LoadImageFromFile needs results['img_path'] or an array in "
                               "results['img']")
            img = _to_rgb3(results['img'], 'results["img"]')
        else:
            data = read_bytes(path, self.backend_args)
            img, applied = orient_like_annotation(
                decode_stored_rgb(data, path), exif_orientation(data), _stated_hw(results),
                self.exif_orientation, path)
            if not applied and self.exif_orientation == 'auto' and not self._told_stored_pixels:
                self._told_stored_pixels = True
                print_log(f'{path}: its EXIF orientation is not applied because its annotation '
                          'gives the size of the stored pixels (their boxes are drawn on them); '
                          'the same holds for any other such image (this is said once).',
                          logger='current')
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(backend_args={self.backend_args}, '
                f'exif_orientation={self.exif_orientation!r})')


def _stated_hw(results: dict):
    """(height, width) an annotation gives for the image, or None."""
    height, width = results.get('height'), results.get('width')
    if height is None or width is None:
        return None
    return int(height), int(width)


@TRANSFORMS.register_module()
class LoadAnnotations(BaseTransform):
    """Turn ``results['instances']`` (and ``seg_map_path``) into ground-truth arrays.

    Adds ``gt_bboxes`` (N, 4) float32 xyxy, ``gt_ignore_flags`` (N,) bool (with_bbox),
    ``gt_bboxes_labels`` (N,) int64 (with_label) and ``gt_seg_map`` (H, W) uint8 (with_seg).
    Missing ``instances`` give empty arrays.

    Args:
        with_bbox / with_label / with_seg: which fields to load.
        reduce_zero_label: for seg maps whose 0 means "unlabelled" (ADE20K): 0 -> 255 and
            every other index minus 1. None (default) takes the data set's setting, which
            segmentation data sets put in every sample.
    A sample's ``label_map`` (old class index -> new index, 255 to drop), set when a data set
    is restricted to a subset of its classes, is applied to the loaded seg map. When the
    sample carries ``num_classes`` (segmentation data sets set it), a mask value that is
    neither a class index nor ``ignore_index`` is an error naming the mask and the value.
        backend_args: mmengine file backend arguments for the seg map.
    """

    def __init__(self, with_bbox: bool = True, with_label: bool = True, with_seg: bool = False,
                 reduce_zero_label: Optional[bool] = None, backend_args: Optional[dict] = None):
        self.with_bbox = with_bbox
        self.with_label = with_label
        self.with_seg = with_seg
        self.reduce_zero_label = reduce_zero_label
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        instances = results.get('instances') or []
        where = results.get('img_path', '<no img_path>')
        if self.with_bbox:
            try:
                boxes = np.array([inst['bbox'] for inst in instances], dtype=np.float32)
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(f'instances of {where}: bad or missing "bbox" ({err})') from err
            if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):
                raise ValueError(f'instances of {where}: boxes must be [x1, y1, x2, y2], got array '
                                 f'of shape {boxes.shape}')
            results['gt_bboxes'] = boxes.reshape(-1, 4)
            results['gt_ignore_flags'] = np.array(
                [bool(inst.get('ignore_flag', 0)) for inst in instances], dtype=bool)
        if self.with_label:
            try:
                results['gt_bboxes_labels'] = np.array(
                    [inst['bbox_label'] for inst in instances], dtype=np.int64).reshape(-1)
            except KeyError as err:
                raise ValueError(f'instances of {where}: an instance lacks "bbox_label"') from err
        if self.with_seg:
            results['gt_seg_map'] = self._load_seg(results)
        return results

    def _load_seg(self, results: dict) -> np.ndarray:
        path = results.get('seg_map_path')
        if path is None:
            raise KeyError(f'LoadAnnotations(with_seg=True): results of {results.get("img_path")} '
                           'have no "seg_map_path"')
        data = read_bytes(path, self.backend_args)
        try:
            with Image.open(io.BytesIO(data)) as pil:
                seg = np.asarray(pil)  # palette PNGs give their indices, not colours
        except Exception as err:
            raise ValueError(f'cannot decode segmentation map {path!r}: {err}') from err
        if seg.ndim != 2:
            raise ValueError(f'segmentation map {path!r} has shape {seg.shape}; expected a '
                             'single-channel (H, W) image of class indices')
        if seg.dtype != np.uint8:
            if seg.min() < 0 or seg.max() > 255:
                raise ValueError(f'segmentation map {path!r} has values outside 0..255')
            seg = seg.astype(np.uint8)
        else:
            seg = seg.copy()
        reduce_zero_label = self.reduce_zero_label
        if reduce_zero_label is None:
            reduce_zero_label = bool(results.get('reduce_zero_label', False))
        if reduce_zero_label:
            seg = seg.astype(np.int16) - 1
            seg[seg < 0] = 255
            seg[seg == 254] = 255
            seg = seg.astype(np.uint8)
        label_map = results.get('label_map')
        if label_map:
            lookup = np.arange(256, dtype=np.uint8)
            for old, new in label_map.items():
                lookup[old] = new
            seg = lookup[seg]
        check_seg_values(seg, results.get('num_classes'), results.get('ignore_index', 255),
                         path, reduce_zero_label)
        return seg

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(with_bbox={self.with_bbox}, with_label={self.with_label}, '
                f'with_seg={self.with_seg}, reduce_zero_label={self.reduce_zero_label})')

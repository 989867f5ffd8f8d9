"""Loading transforms: image file -> RGB array, data-list instances -> ground-truth arrays."""
import io
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from PIL import Image, ImageOps

from ...registry import TRANSFORMS


def _to_rgb3(img: np.ndarray, source: str) -> np.ndarray:
    """(H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4) uint8 -> (H, W, 3) uint8 (alpha dropped)."""
    if img.dtype != np.uint8:
        raise TypeError(f'{source}: expected a uint8 image, got dtype {img.dtype}')
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f'{source}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, '
                         f'got shape {img.shape}')
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def decode_rgb(data: bytes, path: str) -> np.ndarray:
    """Decode encoded image bytes to (H, W, 3) uint8 RGB, EXIF orientation applied.

    OpenCV's decoder does the EXIF rotation, grey -> 3 channels and alpha dropping; PIL is
    the fallback for formats OpenCV does not read. ``path`` only names the file in errors.
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is not None:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(io.BytesIO(data)) as pil:
            pil = ImageOps.exif_transpose(pil)
            return np.asarray(pil.convert('RGB')).copy()
    except Exception as err:  # PIL raises many types for bad data
        raise ValueError(f'cannot decode image file {path!r} ({len(data)} bytes): '
                         f'{type(err).__name__}: {err}') from err


def read_bytes(path: str, backend_args: Optional[dict] = None) -> bytes:
    """Bytes of ``path`` through mmengine's file backends; errors name the path."""
    try:
        return fileio.get(path, backend_args=backend_args)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'image file not found: {path!r}') from err
    except OSError as err:
        raise OSError(f'cannot read image file {path!r}: {err}') from err


@TRANSFORMS.register_module()
class LoadImageFromFile(BaseTransform):
    """Read ``results['img_path']`` as an RGB uint8 (H, W, 3) array.

    EXIF orientation is applied, grey images become 3 identical channels and an alpha channel
    is dropped. When ``img_path`` is None and ``results['img']`` holds an array already (the
    inference API), that array is taken as RGB and only normalised to (H, W, 3) uint8.

    Adds: ``img`` (H, W, 3) uint8, ``img_shape`` and ``ori_shape`` (H, W).

    Args:
        backend_args: mmengine file backend arguments (None: local files).
    """

    def __init__(self, backend_args: Optional[dict] = None):
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results.get('img_path')
        if path is None:
            if not isinstance(results.get('img'), np.ndarray):
                raise KeyError("LoadImageFromFile needs results['img_path'] or an array in "
                               "results['img']")
            img = _to_rgb3(results['img'], 'results["img"]')
        else:
            img = decode_rgb(read_bytes(path, self.backend_args), path)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(backend_args={self.backend_args})'


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
    is restricted to a subset of its classes, is applied to the loaded seg map.
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
        return seg

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(with_bbox={self.with_bbox}, with_label={self.with_label}, '
                f'with_seg={self.with_seg}, reduce_zero_label={self.reduce_zero_label})')

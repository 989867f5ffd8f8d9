"""Packing: results dict -> ``{'inputs': (3, H, W) uint8 tensor, 'data_samples': DataSample}``."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData, PixelData

from ...registry import TRANSFORMS
from ...structures import DetDataSample, SegDataSample

# Filled in when a pipeline did not set them (no Resize / no RandomFlip).
META_DEFAULTS = dict(scale_factor=(1.0, 1.0), flip=False, flip_direction=None)


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) array -> contiguous (C, H, W) tensor of the same dtype."""
    if img.ndim == 2:
        img = img[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def collect_meta(results: dict, meta_keys: Sequence[str]) -> dict:
    """The ``meta_keys`` present in ``results`` (``META_DEFAULTS`` for missing ones)."""
    meta = {}
    for key in meta_keys:
        if key in results:
            meta[key] = results[key]
        elif key in META_DEFAULTS:
            meta[key] = META_DEFAULTS[key]
    return meta


@TRANSFORMS.register_module()
class PackDetInputs(BaseTransform):
    """Pack a detection sample.

    Returns ``{'inputs': (3, H, W) uint8 contiguous tensor, 'data_samples': DetDataSample}``
    where ``gt_instances`` holds the boxes with ``gt_ignore_flags`` False and
    ``ignored_instances`` the others, each with ``bboxes`` (N, 4) float32 and ``labels``
    (N,) int64 (empty when the results carry no ground truth), and the metainfo holds
    ``meta_keys``.
    """

    def __init__(self, meta_keys: Sequence[str] = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                                                   'scale_factor', 'flip', 'flip_direction')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        boxes = np.asarray(results.get('gt_bboxes', np.zeros((0, 4))), np.float32).reshape(-1, 4)
        labels = np.asarray(results.get('gt_bboxes_labels', np.zeros(len(boxes))), np.int64)
        ignore = np.asarray(results.get('gt_ignore_flags', np.zeros(len(boxes))), bool)
        if not len(boxes) == len(labels) == len(ignore):
            raise ValueError(f'PackDetInputs: {len(boxes)} boxes, {len(labels)} labels and '
                             f'{len(ignore)} ignore flags for image {results.get("img_path")}')
        sample = DetDataSample()
        for name, mask in (('gt_instances', ~ignore), ('ignored_instances', ignore)):
            instances = InstanceData()
            instances.bboxes = torch.from_numpy(boxes[mask])
            instances.labels = torch.from_numpy(labels[mask])
            setattr(sample, name, instances)
        sample.set_metainfo(collect_meta(results, self.meta_keys))
        return dict(inputs=image_to_tensor(results['img']), data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'


@TRANSFORMS.register_module()
class PackSegInputs(BaseTransform):
    """Pack a segmentation sample.

    Returns ``{'inputs': (3, H, W) uint8 contiguous tensor, 'data_samples': SegDataSample}``
    with ``gt_sem_seg`` = ``PixelData(data=(1, H, W) int64)`` when ``gt_seg_map`` is present,
    and the metainfo holding ``meta_keys``.
    """

    def __init__(self, meta_keys: Sequence[str] = ('img_path', 'seg_map_path', 'ori_shape',
                                                   'img_shape', 'scale_factor', 'flip',
                                                   'flip_direction', 'reduce_zero_label')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        sample = SegDataSample()
        seg = results.get('gt_seg_map')
        if seg is not None:
            seg = torch.from_numpy(np.ascontiguousarray(seg).astype(np.int64))
            sample.gt_sem_seg = PixelData(data=seg[None])
        sample.set_metainfo(collect_meta(results, self.meta_keys))
        return dict(inputs=image_to_tensor(results['img']), data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'

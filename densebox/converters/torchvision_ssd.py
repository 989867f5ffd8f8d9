"""torchvision's ``ssd300_vgg16`` weights -> a densebox SSD300 COCO checkpoint.

What maps to what (torchvision key -> densebox key):

* ``backbone.features.{i}`` (conv1_1 ... conv4_3, VGG indices 0-21) -> ``backbone.features.{i}``;
* ``backbone.extra.0`` = (pool4, conv5_1, ReLU, conv5_2, ReLU, conv5_3, ReLU, fc) with
  fc = (pool5, fc6, ReLU, fc7, ReLU): ``extra.0.{1,3,5}`` -> ``features.{24,26,28}``,
  ``extra.0.7.1`` (fc6) -> ``features.31``, ``extra.0.7.3`` (fc7) -> ``features.33``;
* ``backbone.scale_weight`` (the L2Norm scale on conv4_3) -> ``neck.l2_norm.weight``;
* ``backbone.extra.{k}.{0,2}`` (k = 1..4: 1x1 then 3x3 conv) ->
  ``neck.extra_layers.{k-1}.{0,1}.0``;
* ``head.classification_head.module_list.{l}`` -> ``bbox_head.cls_convs.{l}``, keeping per
  anchor the background channel and the channels of the 80 COCO category ids (torchvision
  predicts 91 = background + category ids 1..90, ten of which are unused);
* ``head.regression_head.module_list.{l}`` -> ``bbox_head.reg_convs.{l}`` unchanged.

Both libraries lay the head channels out anchor-major (channel ``a * K + k``), order the
default boxes of a cell the same way (small square, large square, then (w, h) and (h, w)
for every ratio) and encode boxes as (dx, dy, dw, dh) with weights 10, 10, 5, 5 (densebox's
variances 0.1, 0.1, 0.2, 0.2), so no channel needs reordering.

Two things the weights cannot carry live in ``configs/ssd300_coco_torchvision.py``:
torchvision's input normalisation (RGB 0-255 minus (122.999, 116.999, 103.999), std 1)
and its default boxes, whose widths and heights are clamped to the input
(``SSDAnchorGenerator(clip=True)``).

Two differences remain. Dropping the unused categories: torchvision's softmax runs over 91
logits, densebox's over 81, so a score differs by the probability mass torchvision gives the
ten unused ids (trained weights never had them as targets). Resizing: torchvision resizes
the normalised float image with ``F.interpolate`` (bilinear), densebox's Resize the uint8
image with OpenCV (bilinear, same sample positions), which rounds to whole grey levels.
tests/test_convert_torchvision_ssd.py removes both (unused ids at probability 0, images
whose resize is exact) and then gets torchvision's detections to 1e-5 in score.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Mapping, Sequence

import torch
from torch import Tensor


# COCO 2017 category id of each of the 80 classes, in densebox's label order (the order of
# densebox.datasets.coco.COCO_CLASSES, i.e. sorted by id).
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90)
TORCHVISION_NUM_LOGITS = 91  # background + category ids 1..90

NUM_LEVELS = 6
NUM_EXTRA_LEVELS = 4


def _key_map() -> Dict[str, str]:
    """torchvision parameter prefix -> densebox prefix, for everything but the head."""
    mapping = {f'backbone.features.{i}': f'backbone.features.{i}'
               for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)}
    mapping.update({f'backbone.extra.0.{i}': f'backbone.features.{23 + i}' for i in (1, 3, 5)})
    mapping['backbone.extra.0.7.1'] = 'backbone.features.31'   # fc6
    mapping['backbone.extra.0.7.3'] = 'backbone.features.33'   # fc7
    for k in range(1, NUM_EXTRA_LEVELS + 1):
        mapping[f'backbone.extra.{k}.0'] = f'neck.extra_layers.{k - 1}.0.0'
        mapping[f'backbone.extra.{k}.2'] = f'neck.extra_layers.{k - 1}.1.0'
    return mapping


def _class_channels(num_anchors: int, category_ids: Sequence[int],
                    num_logits: int = TORCHVISION_NUM_LOGITS) -> Tensor:
    """Indices into torchvision's ``num_anchors * num_logits`` class channels that give
    densebox's ``num_anchors * (len(category_ids) + 1)`` ones (background first)."""
    keep = torch.tensor([0, *category_ids], dtype=torch.long)                       # (C + 1,)
    return (torch.arange(num_anchors)[:, None] * num_logits + keep[None]).flatten()


def convert_torchvision_ssd300(state_dict: Mapping[str, Tensor],
                               category_ids: Sequence[int] = COCO_CATEGORY_IDS,
                               classes: Sequence[str] | None = None) -> dict:
    """Convert a ``torchvision.models.detection.ssd300_vgg16`` state dict.

    Args:
        state_dict: torchvision's state dict (91 class logits per default box).
        category_ids: the torchvision label (COCO category id) of each densebox class, in
            densebox label order. Default: the 80 COCO classes.
        classes: class names stored in the checkpoint's ``meta``; default: COCO's 80 names
            (required when ``category_ids`` is not the default).

    Returns:
        ``{'state_dict': OrderedDict of densebox keys -> tensors, 'meta': {'dataset_meta':
        {'classes': (...,)}, 'converted_from': 'torchvision ssd300_vgg16'}}``, to load into a
        model built from ``configs/ssd300_coco_torchvision.py``.

    Raises:
        KeyError: a key torchvision's model has is missing, or an unknown one is present.
        ValueError: a head does not have 91 logits per default box, or a category id is
            outside 1..90.
    """
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    category_ids = tuple(int(c) for c in category_ids)
    if classes is None:
        if category_ids != COCO_CATEGORY_IDS:
            raise ValueError('convert_torchvision_ssd300: pass the class names for custom '
                             'category_ids')
        from densebox.datasets.coco import COCO_CLASSES
        classes = COCO_CLASSES
    if len(classes) != len(category_ids):
        raise ValueError(f'convert_torchvision_ssd300: {len(classes)} class names for '
                         f'{len(category_ids)} category ids')
    bad = [c for c in category_ids if not 1 <= c < TORCHVISION_NUM_LOGITS]
    if bad:
        raise ValueError(f'convert_torchvision_ssd300: category ids {bad} are outside 1..90')

    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    used = set()

    def take(src: str) -> Tensor:
        if src not in state_dict:
            raise KeyError(f'convert_torchvision_ssd300: the state dict has no {src!r}; is it '
                           'the state dict of torchvision ssd300_vgg16?')
        used.add(src)
        return state_dict[src].detach().clone()

    for src, dst in _key_map().items():
        for p in ('weight', 'bias'):
            out[f'{dst}.{p}'] = take(f'{src}.{p}')
    out['neck.l2_norm.weight'] = take('backbone.scale_weight')

    for level in range(NUM_LEVELS):
        reg_w = take(f'head.regression_head.module_list.{level}.weight')
        reg_b = take(f'head.regression_head.module_list.{level}.bias')
        num_anchors = reg_w.shape[0] // 4
        cls_w = take(f'head.classification_head.module_list.{level}.weight')
        cls_b = take(f'head.classification_head.module_list.{level}.bias')
        if cls_w.shape[0] != num_anchors * TORCHVISION_NUM_LOGITS:
            raise ValueError(
                f'convert_torchvision_ssd300: head.classification_head.module_list.{level} has '
                f'{cls_w.shape[0]} output channels; expected {num_anchors} default boxes x '
                f'{TORCHVISION_NUM_LOGITS} COCO logits = {num_anchors * TORCHVISION_NUM_LOGITS}')
        channels = _class_channels(num_anchors, category_ids)
        out[f'bbox_head.cls_convs.{level}.weight'] = cls_w[channels].contiguous()
        out[f'bbox_head.cls_convs.{level}.bias'] = cls_b[channels].contiguous()
        out[f'bbox_head.reg_convs.{level}.weight'] = reg_w
        out[f'bbox_head.reg_convs.{level}.bias'] = reg_b

    unknown = sorted(set(state_dict) - used)
    if unknown:
        raise KeyError(f'convert_torchvision_ssd300: unexpected keys {unknown[:5]}'
                       f'{" ..." if len(unknown) > 5 else ""} ({len(unknown)} in all); is it '
                       'the state dict of torchvision ssd300_vgg16 (not SSD512 / SSDLite)?')
    return {'state_dict': out,
            'meta': {'dataset_meta': {'classes': tuple(classes)},
                     'converted_from': 'torchvision ssd300_vgg16'}}


def torchvision_label_map(category_ids: Sequence[int] = COCO_CATEGORY_IDS) -> Tensor:
    """(C,) int64: the torchvision label (COCO category id) of each densebox label."""
    return torch.tensor(category_ids, dtype=torch.long)


def convert_torchvision_ssd300_checkpoint(checkpoint: dict, cfg=None, **kwargs):
    """Model-zoo entry point: a loaded torchvision SSD300 file (a bare state dict or one
    under ``state_dict``) -> :func:`convert_torchvision_ssd300`."""
    return convert_torchvision_ssd300(checkpoint.get('state_dict', checkpoint), **kwargs)

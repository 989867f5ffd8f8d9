"""mmdetection SSD300 / SSD512 (VGG16) and SSDLite (MobileNetV2) checkpoints -> densebox.

mmdetection (2.14+ and 3.x) names and lays out these models as follows; the converter
renames every key and rearranges the prediction convolutions:

- VGG16 trunk ``backbone.features.<i>``: the same indices as densebox's ``SSDVGG``
  (conv4_3's ReLU 22, pool5 30, fc6 31, fc7 33), kept as they are.
- MobileNetV2 ``backbone.conv1`` (stem), ``backbone.layer<s+1>.<b>.{expand_conv,
  depthwise_conv, linear_conv}.{conv,bn}``, ``backbone.conv2`` (the 1280 conv) ->
  ``backbone.stem``, ``backbone.stages.<s>.<b>.{expand,depthwise,project}``,
  ``backbone.conv_last``.
- ``SSDNeck``: ``neck.l2_norm.weight`` as is; each extra level is a ``ConvModule`` 1x1
  (``extra_layers.<i>.0.{conv,bn}``) then a ``ConvModule`` 3x3 (``.1.{conv,bn}``) or, for
  SSDLite, a ``DepthwiseSeparableConvModule`` (``.1.depthwise_conv.{conv,bn}``,
  ``.1.pointwise_conv.{conv,bn}``) -> densebox's ``nn.Sequential`` indices.
- ``SSDHead``: ``{cls,reg}_convs.<i>`` is an ``nn.Sequential`` whose last entry is the
  predicting conv (index 0 for SSD; for SSDLite a depthwise ``ConvModule`` at 0 and the
  1x1 conv at 1).

Prediction channels: for anchor ``a`` and class ``c`` the class conv's output channel is
``a * (C + 1) + c`` in both projects, but mmdetection's background is the LAST class
(index C) and densebox's is the FIRST (index 0), so each anchor's C + 1 channels are
rotated. The anchors of a cell come in an order given by mmdetection's
``SSDAnchorGenerator`` (``scale_major=False`` in every mmdetection SSD config: the
``min_size`` box, the ``sqrt(min_size * max_size)`` box, then for each ratio r the wide
(h/w = 1/r) and the tall (h/w = r) ``min_size`` box), which is densebox's order; the
converter still derives the permutation from both generators' rules and applies it, so
a checkpoint trained with ``scale_major=True`` is rejected rather than silently scrambled.

Anchor sizes are not weights: mmdetection computes them from ``basesize_ratio_range``
with ``int()`` truncation (SSD512 COCO: 20, 51, 133, ...), densebox configs hold the
Caffe values (20.48, 51.2, ...). To reproduce mmdetection's numbers, set the config's
``min_sizes`` / ``max_sizes`` to mmdetection's (the model zoo does, see
:func:`mmdet_ssd_anchor_sizes`).

BatchNorm eps: mmdetection's SSDLite uses ``eps=1e-3``, densebox's SSDLite neck and head
``1e-5``; ``source_bn_eps`` folds the difference into ``running_var`` so the converted
layers compute exactly what the original ones did.
"""
import math
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ['convert_mmdet_ssd', 'convert_mmdet_ssd_checkpoint', 'mmdet_anchor_order',
           'densebox_anchor_order', 'anchor_permutation', 'mmdet_ssd_anchor_sizes']

# ------------------------------------------------------------------------------ anchors
AnchorKey = Tuple[int, float]  # (0: min_size box, 1: sqrt(min*max) box; h / w ratio)


def mmdet_anchor_order(ratios: Sequence[float], scale_major: bool = False) -> List[AnchorKey]:
    """The boxes of one cell in the order of mmdetection's ``SSDAnchorGenerator``.

    mmdetection builds the ratio list ``[1, 1/r1, r1, 1/r2, r2, ...]`` (h/w), takes every
    (ratio, scale) pair of the scales ``[1, sqrt(max/min)]`` (scale-major or ratio-major
    flattening) and keeps the entries ``[0, R, 1, 2, ..., R-1]`` of that flat list
    (R = number of ratios).
    """
    hw_ratios = [1.0]
    for r in ratios:
        hw_ratios += [1.0 / float(r), float(r)]
    num = len(hw_ratios)
    if scale_major:  # (R, S) grid flattened row by row: ratio-major
        flat = [(s, hw) for hw in hw_ratios for s in (0, 1)]
    else:            # (S, R) grid: every ratio at scale 1, then every ratio at scale 2
        flat = [(s, hw) for s in (0, 1) for hw in hw_ratios]
    keep = list(range(num))
    keep.insert(1, num)
    return [flat[i] for i in keep]


def densebox_anchor_order(ratios: Sequence[float]) -> List[AnchorKey]:
    """The boxes of one cell in densebox's ``SSDAnchorGenerator`` order."""
    order = [(0, 1.0), (1, 1.0)]
    for r in ratios:
        # (w, h) = min * (sqrt(r), 1/sqrt(r)) then min * (1/sqrt(r), sqrt(r))
        order += [(0, 1.0 / float(r)), (0, float(r))]
    return order


def anchor_permutation(ratios: Sequence[float], scale_major: bool = False) -> List[int]:
    """``perm[j]`` = position in mmdetection's order of densebox's j-th anchor of a cell."""
    src = mmdet_anchor_order(ratios, scale_major)
    dst = densebox_anchor_order(ratios)
    perm = []
    for key in dst:
        hits = [i for i, k in enumerate(src) if k[0] == key[0] and math.isclose(k[1], key[1])]
        if len(hits) != 1:
            raise ValueError(f'mmdet anchors {src} (scale_major={scale_major}) do not hold '
                             f'densebox anchor {key} exactly once; the checkpoint cannot be '
                             'converted to densebox\'s SSD head')
        perm.append(hits[0])
    if len(src) != len(dst):
        raise ValueError(f'mmdet has {len(src)} anchors per cell, densebox {len(dst)}')
    return perm


def mmdet_ssd_anchor_sizes(input_size: int, basesize_ratio_range: Tuple[float, float],
                           num_levels: int) -> Tuple[List[int], List[int]]:
    """``(min_sizes, max_sizes)`` mmdetection derives from ``basesize_ratio_range``.

    The sizes grow in integer percent steps of ``floor((max - min) / (levels - 2))`` and
    are truncated to int; the first level is added by hand (SSD300 COCO 7%-15%, VOC
    10%-20%, SSD512 COCO 4%-10%, VOC 7%-15%).
    """
    lo, hi = int(basesize_ratio_range[0] * 100), int(basesize_ratio_range[1] * 100)
    step = int(math.floor(hi - lo) / (num_levels - 2))
    mins, maxs = [], []
    for ratio in range(lo, hi + 1, step):
        mins.append(int(input_size * ratio / 100))
        maxs.append(int(input_size * (ratio + step) / 100))
    first = {(300, 0.15): (7, 15), (300, 0.2): (10, 20),
             (512, 0.1): (4, 10), (512, 0.15): (7, 15)}.get((input_size, basesize_ratio_range[0]))
    if first is None:
        raise ValueError(f'mmdet has no SSD anchor rule for input {input_size} and '
                         f'basesize_ratio_range {basesize_ratio_range}')
    mins.insert(0, int(input_size * first[0] / 100))
    maxs.insert(0, int(input_size * first[1] / 100))
    return mins, maxs


# ------------------------------------------------------------------------------ renaming
_BN_PARAMS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
_MNV2_UNITS = {'expand_conv': 'expand', 'depthwise_conv': 'depthwise', 'linear_conv': 'project'}


def _rename_backbone(key: str) -> str:
    parts = key.split('.')
    if parts[1] == 'features':              # VGG: same indices
        return key
    if parts[1] == 'conv1':                 # MobileNetV2 stem ConvModule
        return '.'.join(['backbone', 'stem'] + parts[2:])
    if parts[1] == 'conv2':                 # MobileNetV2 final 1x1 ConvModule
        return '.'.join(['backbone', 'conv_last'] + parts[2:])
    m = re.fullmatch(r'layer(\d+)', parts[1])
    if m and len(parts) >= 6 and parts[3] in _MNV2_UNITS:
        stage = int(m.group(1)) - 1
        return '.'.join(['backbone', 'stages', str(stage), parts[2], _MNV2_UNITS[parts[3]]]
                        + parts[4:])
    raise KeyError(key)


def _rename_neck(key: str, with_norm: bool) -> str:
    if key == 'neck.l2_norm.weight':
        return key
    m = re.fullmatch(r'neck\.extra_layers\.(\d+)\.([01])\.(.+)', key)
    if not m:
        raise KeyError(key)
    level, which, rest = m.groups()
    prefix = f'neck.extra_layers.{level}.{which}'
    # densebox _conv_block: [conv, (bn), act] or [dw, (bn), act, pw, (bn), act]
    sub = rest.split('.')
    if sub[0] in ('conv', 'bn'):
        index = 0 if sub[0] == 'conv' else 1
        return f'{prefix}.{index}.{".".join(sub[1:])}'
    if sub[0] in ('depthwise_conv', 'pointwise_conv') and sub[1] in ('conv', 'bn'):
        step = 3 if with_norm else 2
        index = (0 if sub[0] == 'depthwise_conv' else step) + (1 if sub[1] == 'bn' else 0)
        return f'{prefix}.{index}.{".".join(sub[2:])}'
    raise KeyError(key)


def _rename_head(key: str, depthwise: bool) -> Tuple[str, bool]:
    """-> (densebox key, whether it is a predicting conv whose channels need rearranging)."""
    m = re.fullmatch(r'bbox_head\.(cls|reg)_convs\.(\d+)\.(\d+)\.(.+)', key)
    if not m:
        raise KeyError(key)
    branch, level, layer, rest = m.group(1), m.group(2), int(m.group(3)), m.group(4)
    prefix = f'bbox_head.{branch}_convs.{level}'
    if not depthwise:
        if layer != 0 or rest not in ('weight', 'bias'):
            raise KeyError(key)  # stacked convs (stacked_convs > 0) have no densebox twin
        return f'{prefix}.{rest}', True
    if layer == 0 and rest.startswith('conv.'):
        return f'{prefix}.0.{rest[5:]}', False
    if layer == 0 and rest.startswith('bn.'):
        return f'{prefix}.1.{rest[3:]}', False
    if layer == 1 and rest in ('weight', 'bias'):
        return f'{prefix}.3.{rest}', True
    raise KeyError(key)


def _rearrange_prediction(t: Tensor, num_anchors: int, per_anchor: int, perm: Sequence[int],
                          background_last: bool) -> Tensor:
    """(A * K, ...) conv weight / bias: anchors to densebox order, background to index 0."""
    if t.shape[0] != num_anchors * per_anchor:
        raise ValueError(f'prediction conv has {t.shape[0]} outputs, expected {num_anchors} '
                         f'anchors x {per_anchor}')
    t = t.reshape(num_anchors, per_anchor, *t.shape[1:])
    t = t[torch.as_tensor(perm)]
    if background_last:
        order = torch.cat([torch.tensor([per_anchor - 1]), torch.arange(per_anchor - 1)])
        t = t[:, order]
    return t.reshape(num_anchors * per_anchor, *t.shape[2:]).contiguous()


def convert_mmdet_ssd(state_dict: Dict[str, Tensor], anchor_ratios: Sequence[Sequence[float]],
                      num_classes: Optional[int] = None, scale_major: bool = False,
                      source_bn_eps: Optional[float] = None, target_bn_eps: float = 1e-5
                      ) -> 'OrderedDict[str, Tensor]':
    """Convert an mmdetection SSD / SSDLite state dict to densebox key names and layouts.

    Args:
        state_dict: mmdetection's ``state_dict`` (the ``'state_dict'`` of its checkpoint).
        anchor_ratios: per level, the extra aspect ratios, e.g. ``[[2], [2, 3], [2, 3],
            [2, 3], [2], [2]]`` (the same in both configs).
        num_classes: object classes (background excluded); checked against the
            checkpoint when given, else read from it.
        scale_major: ``anchor_generator.scale_major`` of the mmdetection config (False in
            all of them).
        source_bn_eps: BatchNorm eps of the mmdetection model (SSDLite: 1e-3). When it
            differs from ``target_bn_eps`` (densebox's, 1e-5), ``running_var`` is shifted by
            the difference so that every BN computes the same function.

    Returns:
        An ordered state dict for :class:`~densebox.models.SingleStageDetector`.
    """
    state = OrderedDict((k, v) for k, v in state_dict.items())
    if any(k.startswith('backbone.extra.') or k.startswith('backbone.l2_norm') for k in state):
        raise KeyError('this is an mmdetection < 2.14 SSD checkpoint (extra layers inside the '
                       'backbone, legacy anchors); only the SSDNeck format (2.14+ / 3.x) is '
                       'supported')
    neck_norm = any(re.match(r'neck\.extra_layers\.\d+\.\d+\.(bn|\w+_conv\.bn)\.', k) for k in state)
    head_depthwise = any(re.match(r'bbox_head\.cls_convs\.\d+\.0\.conv\.', k) for k in state)

    num_levels = len(anchor_ratios)
    perms = [anchor_permutation(r, scale_major) for r in anchor_ratios]
    num_anchors = [len(p) for p in perms]
    # Read C from the first class conv: (A * (C + 1), ...).
    first_cls = [v for k, v in state.items()
                 if re.fullmatch(r'bbox_head\.cls_convs\.0\.\d+\.(weight)', k) and v.dim() == 4
                 and v.shape[1] != 1]
    if not first_cls:
        raise KeyError('no bbox_head.cls_convs.0 prediction conv in the state dict: is this an '
                       'mmdetection SSD checkpoint?')
    found_classes = first_cls[-1].shape[0] // num_anchors[0] - 1
    if num_classes is not None and int(num_classes) != found_classes:
        raise ValueError(f'the checkpoint predicts {found_classes} classes, the config '
                         f'{num_classes}')

    out = OrderedDict()
    unknown = []
    for key, value in state.items():
        try:
            if key.startswith('backbone.'):
                new, predicting = _rename_backbone(key), False
            elif key.startswith('neck.'):
                new, predicting = _rename_neck(key, neck_norm), False
            elif key.startswith('bbox_head.'):
                new, predicting = _rename_head(key, head_depthwise)
            else:
                raise KeyError(key)
        except KeyError:
            unknown.append(key)
            continue
        if predicting:
            level = int(key.split('.')[2])
            if level >= num_levels:
                raise ValueError(f'{key}: level {level} but {num_levels} anchor levels given')
            is_cls = key.startswith('bbox_head.cls_convs')
            value = _rearrange_prediction(value, num_anchors[level],
                                          found_classes + 1 if is_cls else 4, perms[level],
                                          background_last=is_cls)
        if (source_bn_eps is not None and new.endswith('.running_var')
                and source_bn_eps != target_bn_eps):
            value = value + (float(source_bn_eps) - float(target_bn_eps))
        out[new] = value
    if unknown:
        raise KeyError(f'{len(unknown)} mmdetection keys have no densebox counterpart, e.g. '
                       f'{unknown[:5]}')
    return out


def convert_mmdet_ssd_checkpoint(checkpoint: dict, cfg, scale_major: bool = False,
                                 source_bn_eps: Optional[float] = None) -> 'OrderedDict[str, Tensor]':
    """Model-zoo entry point: a loaded mmdetection checkpoint and the densebox config.

    Reads the anchor ratios and class count from ``cfg.model.bbox_head`` and checks the
    checkpoint's class names (``meta.CLASSES`` in mmdet 2.x, ``meta.dataset_meta.classes``
    in 3.x) against the config's when both are known.
    """
    state = checkpoint.get('state_dict', checkpoint)
    head = cfg.model.bbox_head
    meta = checkpoint.get('meta') or {}
    names = meta.get('CLASSES') or (meta.get('dataset_meta') or {}).get('classes')
    if names:
        from densebox.config import dataset_meta_from_config
        expected = tuple(dataset_meta_from_config(cfg)['classes'])
        if tuple(names) != expected:
            raise ValueError(f'the checkpoint\'s classes {tuple(names)[:5]}... differ from the '
                             f'config\'s {expected[:5]}...')
    return convert_mmdet_ssd(state, head.anchor_generator.ratios, head.num_classes,
                             scale_major=scale_major, source_bn_eps=source_bn_eps)

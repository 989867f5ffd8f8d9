"""The ImageNet VGG16 that SSD starts from -> densebox ``SSDVGG`` backbone weights.

SSD (Liu et al., 2016) initialises its trunk from ``VGG_ILSVRC_16_layers_fc_reduced``:
the ImageNet VGG16 of Simonyan & Zisserman with fc6 / fc7 subsampled into convolutions
(fc6: 3x3 with 1024 outputs, used with dilation 6; fc7: 1x1 with 1024 outputs). It is
published in these forms:

- the Caffe model, as converted by OpenMMLab: mmdetection's ``open-mmlab://vgg16_caffe``
  (``vgg16_caffe-292e1171.pth``); keys ``features.<i>`` in mmdetection's ``SSDVGG`` order
  (conv1_1 at 0 ... conv5_3 at 28, fc6 at 31, fc7 at 33). Caffe trained it on **BGR**
  images in 0-255 minus the mean (B, G, R) = (104, 117, 123), with no division by a std;
- ssd.pytorch's ``vgg16_reducedfc.pth``: the same tensors saved from an ``nn.ModuleList``
  (keys ``<i>.weight``), or a direct dump of the caffemodel with Caffe's layer names
  (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``);
- torchvision's ``VGG16_Weights.IMAGENET1K_FEATURES`` (``vgg16_features-amdegroot-88682ab5.pth``,
  ported from ssd.pytorch): a whole ``vgg16`` state dict of which only ``features``
  (conv1_1 ... conv5_3) holds usable values (its ``classifier`` has none, so there is no
  fc6 / fc7). torchvision documents its input as **RGB** in 0-255 minus
  (R, G, B) = (123, 117, 104) (``mean=(0.48235, 0.45882, 0.40784), std=1/255`` on a 0-1
  image), which is what its ``ssd300_vgg16`` is trained with.

densebox feeds every detector RGB (``DetDataPreprocessor`` has no channel swap), so the
converter decides what conv1_1 sees: ``channel_order='bgr'`` reverses the input channels
of conv1_1's filters (``weight[:, ::-1]``), so that an RGB image meets each filter tap the
colour Caffe trained it on; ``'rgb'`` keeps them. The mean is subtracted by the config's
data preprocessor (the SSD configs subtract the ImageNet mean (123.675, 116.28, 103.53),
within one grey level of both publishers' means, with std 1: the 0-255 scale both forms
were trained on).

fc6 / fc7 that a source does not have are left out of the result, so they keep the
backbone's own initialisation (Xavier in ``SSDVGG``, as torchvision does).
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
from torch import Tensor

__all__ = ['convert_vgg16_reducedfc', 'convert_vgg16_reducedfc_checkpoint',
           'CAFFE_LAYER_INDEX', 'VGG16_CONV_INDICES', 'FC_INDICES']

# Caffe layer name -> index of that conv in SSDVGG.features (mmdetection / torchvision order).
CAFFE_LAYER_INDEX = OrderedDict([
    ('conv1_1', 0), ('conv1_2', 2),
    ('conv2_1', 5), ('conv2_2', 7),
    ('conv3_1', 10), ('conv3_2', 12), ('conv3_3', 14),
    ('conv4_1', 17), ('conv4_2', 19), ('conv4_3', 21),
    ('conv5_1', 24), ('conv5_2', 26), ('conv5_3', 28),
    ('fc6', 31), ('fc7', 33),
])
VGG16_CONV_INDICES = tuple(CAFFE_LAYER_INDEX.values())[:13]
FC_INDICES = (31, 33)
CHANNEL_ORDERS = ('bgr', 'rgb')

_INDEXED = re.compile(r'(?:module\.)?(?:backbone\.)?(?:features\.)?(\d+)\.(weight|bias)')
_CAFFE = re.compile(r'(?:module\.)?(conv\d_\d|fc[67])\.(weight|bias)')


def _target_shapes() -> Dict[str, torch.Size]:
    """Parameter shapes of densebox's full-width ``SSDVGG`` (built on the meta device)."""
    from densebox.models.backbones.vgg_ssd import SSDVGG
    with torch.device('meta'):
        return {k: v.shape for k, v in SSDVGG(arch='vgg16').state_dict().items()}


def _densebox_key(key: str) -> Tuple[str, bool]:
    """-> (``features.<i>.<param>``, recognised). ``classifier.*`` maps to ('', True)."""
    if key.startswith('classifier.'):  # torchvision's unusable fc layers
        return '', True
    m = _CAFFE.fullmatch(key)
    if m:
        if m.group(1) not in CAFFE_LAYER_INDEX:
            return key, False
        return f'features.{CAFFE_LAYER_INDEX[m.group(1)]}.{m.group(2)}', True
    m = _INDEXED.fullmatch(key)
    if m:
        return f'features.{m.group(1)}.{m.group(2)}', True
    return key, False


def convert_vgg16_reducedfc(state_dict: Dict[str, Tensor], channel_order: str = 'bgr'
                            ) -> dict:
    """Convert a reduced-fc VGG16 state dict to ``SSDVGG(arch='vgg16')`` keys.

    Args:
        state_dict: one of the published forms (module docstring): keys ``features.<i>``,
            bare ``<i>`` or Caffe layer names; ``classifier.*`` is dropped.
        channel_order: the colour order the source's conv1_1 was trained on, ``'bgr'``
            (Caffe) or ``'rgb'`` (torchvision's documented input). ``'bgr'`` filters are
            reordered for densebox's RGB input.

    Returns:
        ``{'state_dict': OrderedDict of 'features.<i>.weight/bias', 'meta': {...}}`` with
        ``meta['input']`` (what the first conv now expects) and ``meta['not_in_source']``
        (fc6 / fc7 prefixes when the source has none; they keep their initialisation).

    Raises:
        ValueError: an unknown ``channel_order``, a shape that is not VGG16's, or only
            one of fc6 / fc7.
        KeyError: a key that is none of the layouts above, or a missing conv layer.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f'convert_vgg16_reducedfc: channel_order must be one of '
                         f'{CHANNEL_ORDERS}, got {channel_order!r}')
    target = _target_shapes()
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    unknown: List[str] = []
    for key, value in state_dict.items():
        new, known = _densebox_key(key)
        if not known or (new and new not in target):
            unknown.append(key)
            continue
        if not new:
            continue
        if tuple(value.shape) != tuple(target[new]):
            raise ValueError(f'convert_vgg16_reducedfc: {key!r} has shape {tuple(value.shape)}, '
                             f'VGG16 (reduced fc) needs {tuple(target[new])} for {new}; is '
                             'this a VGG16 with reduced fc6 / fc7 (1024 channels)?')
        if new in out:
            raise KeyError(f'convert_vgg16_reducedfc: two keys give {new}; mixed layouts?')
        out[new] = value.detach().clone().float()
    if unknown:
        raise KeyError(f'convert_vgg16_reducedfc: {len(unknown)} keys are not VGG16 layers, '
                       f'e.g. {unknown[:5]}; expected features.<i>, <i> or Caffe names '
                       '(conv1_1 ... fc7)')
    missing = [f'features.{i}.{p}' for i in VGG16_CONV_INDICES for p in ('weight', 'bias')
               if f'features.{i}.{p}' not in out]
    if missing:
        raise KeyError(f'convert_vgg16_reducedfc: the state dict lacks {missing[:4]}'
                       f'{" ..." if len(missing) > 4 else ""}: not a VGG16')
    fc_present = [i for i in FC_INDICES if f'features.{i}.weight' in out]
    if len(fc_present) == 1:
        raise ValueError('convert_vgg16_reducedfc: the state dict has only one of fc6 / fc7 '
                         f'(features.{fc_present[0]}); expected both or neither')
    if channel_order == 'bgr':
        out['features.0.weight'] = out['features.0.weight'].flip(1).contiguous()
    meta = dict(input='RGB, 0-255, minus the per-channel mean, std 1',
                source_channel_order=channel_order,
                not_in_source=[] if fc_present else ['features.31', 'features.33'])
    return {'state_dict': out, 'meta': meta}


def convert_vgg16_reducedfc_checkpoint(checkpoint: dict, cfg=None, channel_order: str = 'bgr'
                                       ) -> dict:
    """Model-zoo entry point: a loaded checkpoint (a state dict, or ``{'state_dict': ...}``)."""
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        raise TypeError(f'convert_vgg16_reducedfc: expected a state dict, got '
                        f'{type(state).__name__}')
    return convert_vgg16_reducedfc(state, channel_order=channel_order)

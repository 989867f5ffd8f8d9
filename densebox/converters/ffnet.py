"""FFNet's ImageNet backbones (Qualcomm-AI-research/FFNet) -> densebox ``FFNetResNet``.

The FFNet repository trains each backbone on ImageNet as a classifier
(``classification_ffnet78S_BBX_mobile``, ``classification_ffnet150_AAX``, ...: the ResNet,
the up-head and a classification head) and publishes the state dict in a zip per depth,
e.g. ``ffnet78S.zip`` -> ``ffnet78S/ffnet78S_BBX_imagenet_state_dict_quarts.pth``. Its keys:

- ``backbone_model.*``: the ResNet, with the module names of the repository's
  ``models/resnet.py`` (A family: ``conv1`` / ``bn1`` / ``layer1`` ... as torchvision's
  ResNet; S family: ``conv0`` / ``bn0`` / ``conv1`` / ``bn1`` stem; BasicBlocks with
  ``conv1``, ``bn1``, ``conv2``, ``bn2`` and ``downsample.0`` / ``downsample.1``).
  densebox's ``FFNetResNet`` uses the same names, so only the prefix goes;
- ``head.*``: the up-head and the classification head. FFNet's segmentation recipes load
  the backbone only (``pretrained_backbone_only=True``: the up-head starts from scratch on
  Cityscapes), and so does this converter.

The ``d`` segmentation models (``segmentation_ffnet78S_dBBB_mobile`` = ``Resnet78S_D``)
start from the ImageNet weights of the model without the ``d``: FFNet loads them with
``strict=False``, so the one layer that only the ``d`` variant has, the 1x1 projection of
the first block (``layer1.0.downsample``, which exists because that block strides), keeps
its initialisation. Converting for ``arch='78S'`` and loading into ``arch='d78S'`` through
a ``Pretrained`` init_cfg does the same (mmengine lists the missing keys in the log).
"""
from collections import OrderedDict
from typing import Dict

import torch
from torch import Tensor

__all__ = ['convert_ffnet_imagenet', 'convert_ffnet_imagenet_checkpoint']

_BACKBONE_PREFIX = 'backbone_model.'
_DROPPED_PREFIXES = ('head.', 'smoothing.')  # up-head + classifier; pre-downsampling kernel


def _target_shapes(arch: str) -> Dict[str, torch.Size]:
    from densebox.models.backbones.ffnet_resnet import FFNetResNet
    with torch.device('meta'):  # shapes only: a ResNet-150 costs no memory here
        return {k: v.shape for k, v in FFNetResNet(arch=arch).state_dict().items()}


def convert_ffnet_imagenet(state_dict: Dict[str, Tensor], arch: str = '78S'
                           ) -> 'OrderedDict[str, Tensor]':
    """FFNet classification state dict -> ``FFNetResNet(arch)`` state dict.

    Args:
        state_dict: the published ``*_imagenet_state_dict_quarts.pth`` content
            (``backbone_model.*`` and ``head.*`` keys; a ``module.`` prefix is removed).
        arch: the ImageNet model's architecture, without a leading ``d`` (``'78S'``,
            ``'150'``, ...; see :data:`densebox.models.backbones.ffnet_resnet.ARCHS`).

    Raises:
        ValueError: a ``d`` arch (the ImageNet models have none), or a shape that differs.
        KeyError: keys that are not the backbone's, or backbone keys that are missing.
    """
    if str(arch).startswith('d'):
        raise ValueError(f'convert_ffnet_imagenet: FFNet publishes ImageNet weights for '
                         f'{arch[1:]!r}, not {arch!r}; convert with arch={arch[1:]!r} and load '
                         f'into the {arch!r} backbone (its layer1.0.downsample keeps its init)')
    target = _target_shapes(arch)
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith(_DROPPED_PREFIXES):
            continue
        name = key[len(_BACKBONE_PREFIX):] if key.startswith(_BACKBONE_PREFIX) else None
        if name is None or name not in target:
            unknown.append(key)
            continue
        if tuple(value.shape) != tuple(target[name]):
            raise ValueError(f'convert_ffnet_imagenet: {key!r} has shape {tuple(value.shape)}, '
                             f'FFNetResNet({arch!r}) needs {tuple(target[name])}')
        out[name] = value.detach().clone()
    if unknown:
        raise KeyError(f'convert_ffnet_imagenet({arch!r}): {len(unknown)} keys are not '
                       f'FFNet {arch} backbone keys, e.g. {unknown[:5]}; is this the ImageNet '
                       f'state dict of FFNet {arch}?')
    missing = [k for k in target if k not in out]
    if missing:
        raise KeyError(f'convert_ffnet_imagenet({arch!r}): {len(missing)} backbone keys are '
                       f'missing, e.g. {missing[:5]}; is this the ImageNet state dict of '
                       f'FFNet {arch}?')
    return out


def convert_ffnet_imagenet_checkpoint(checkpoint: dict, cfg=None, arch: str = '78S'
                                      ) -> 'OrderedDict[str, Tensor]':
    """Model-zoo entry point (``cfg`` is unused: these are backbone weights)."""
    state = checkpoint.get('state_dict', checkpoint)
    return convert_ffnet_imagenet(state, arch=arch)

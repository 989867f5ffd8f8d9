"""torchvision ImageNet classifiers -> densebox segmentation backbones, where the
architecture is the same.

- ``mobilenet_v2`` -> :class:`~densebox.models.backbones.MobileNetV2` (the key mapping is
  the backbone's own :func:`convert_torchvision_state_dict`; ``classifier.*`` is dropped).
- ``resnet18`` / ``resnet34`` -> :class:`~densebox.models.backbones.FFNetResNet`
  ``arch='18'`` / ``'34'``: FFNet's A family is torchvision's ResNet of BasicBlocks with the
  same module names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer2.0.downsample.0``),
  so only ``fc.*`` is dropped and every other key is checked.

(torchvision's own segmentation models use MobileNetV3 / ResNet-50 trunks that have no
densebox twin.) The results are backbone state dicts; load them with
``backbone=dict(..., init_cfg=dict(type='Pretrained', checkpoint=PATH))`` or, with
``prefix='backbone.'``, into a whole segmentor with ``strict=False``.
"""
import re
from collections import OrderedDict
from typing import Dict

from torch import Tensor

__all__ = ['convert_torchvision_mobilenet_v2', 'convert_torchvision_resnet',
           'convert_torchvision_backbone_checkpoint', 'RESNET_BLOCKS', 'BACKBONE_ARCHS']

# torchvision ResNets built from BasicBlocks: blocks per stage.
RESNET_BLOCKS = {'resnet18': (2, 2, 2, 2), 'resnet34': (3, 4, 6, 3)}


def _prefixed(state: Dict[str, Tensor], prefix: str) -> 'OrderedDict[str, Tensor]':
    return OrderedDict((prefix + k, v) for k, v in state.items())


def convert_torchvision_mobilenet_v2(state_dict: Dict[str, Tensor],
                                     prefix: str = '') -> 'OrderedDict[str, Tensor]':
    """torchvision ``mobilenet_v2`` weights -> densebox ``MobileNetV2`` keys (with the final
    1280 conv as ``conv_last``; a backbone built without index 7 drops it when loading)."""
    from densebox.models.backbones.mobilenet_v2 import convert_torchvision_state_dict
    return _prefixed(convert_torchvision_state_dict(state_dict), prefix)


_RESNET_KEY = re.compile(
    r'(conv1\.weight|bn1\.(weight|bias|running_mean|running_var|num_batches_tracked)'
    r'|layer(?P<stage>[1-4])\.(?P<block>\d+)\.'
    r'(conv[12]\.weight|bn[12]\.(weight|bias|running_mean|running_var|num_batches_tracked)'
    r'|downsample\.0\.weight|downsample\.1\.(weight|bias|running_mean|running_var|'
    r'num_batches_tracked)))')


def convert_torchvision_resnet(state_dict: Dict[str, Tensor], arch: str = 'resnet18',
                               prefix: str = '') -> 'OrderedDict[str, Tensor]':
    """torchvision ``resnet18`` / ``resnet34`` weights -> ``FFNetResNet(arch='18' / '34')``.

    Raises a ``KeyError`` for any key that is not a BasicBlock ResNet key of that depth
    (a ResNet-50 checkpoint, with Bottleneck ``conv3``, is refused).
    """
    if arch not in RESNET_BLOCKS:
        raise ValueError(f'convert_torchvision_resnet: arch must be one of '
                         f'{sorted(RESNET_BLOCKS)}, got {arch!r}')
    blocks = RESNET_BLOCKS[arch]
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('fc.'):
            continue
        m = _RESNET_KEY.fullmatch(key)
        if not m or (m.group('stage') and int(m.group('block')) >= blocks[int(m.group('stage')) - 1]):
            raise KeyError(f'convert_torchvision_resnet({arch!r}): unexpected key {key!r}; is '
                           f'this a torchvision {arch} checkpoint?')
        out[prefix + key] = value
    return out


_BACKBONES = {
    'mobilenet_v2': lambda state, prefix: convert_torchvision_mobilenet_v2(state, prefix),
    'resnet18': lambda state, prefix: convert_torchvision_resnet(state, 'resnet18', prefix),
    'resnet34': lambda state, prefix: convert_torchvision_resnet(state, 'resnet34', prefix),
}
BACKBONE_ARCHS = tuple(sorted(_BACKBONES))  # the ``arch`` values the zoo entry point takes


def convert_torchvision_backbone_checkpoint(checkpoint: dict, cfg=None, arch: str = 'resnet18',
                                            prefix: str = '') -> 'OrderedDict[str, Tensor]':
    """Model-zoo entry point: a loaded torchvision checkpoint -> backbone state dict.

    ``arch``: ``'mobilenet_v2'``, ``'resnet18'`` or ``'resnet34'``; ``cfg`` is unused (these
    are backbone weights, not whole models).
    """
    if arch not in _BACKBONES:
        raise ValueError(f'unknown torchvision backbone {arch!r}; known: {sorted(_BACKBONES)}')
    state = checkpoint.get('state_dict', checkpoint)
    return _BACKBONES[arch](state, prefix)

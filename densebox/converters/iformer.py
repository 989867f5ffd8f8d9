"""Official iFormer ImageNet checkpoints (sail-sg/iFormer, ``iformer_{small,base,large}
[_384].pth``) -> densebox :class:`~densebox.models.backbones.IFormer` /
:class:`~densebox.models.backbones.IFormerClassifier`.

The layers are the same; only the names differ. Official names, from
``models/inception_transformer.py``:

===========================================  ======================================
official                                     densebox
===========================================  ======================================
``patch_embed.{proj1,norm1,proj2,norm2}``    ``stages.0.downsample.{conv1,bn1,conv2,bn2}``
``patch_embed{k}.{proj,norm}`` (k = 2..4)    ``stages.{k-1}.downsample.{conv,bn}``
``pos_embed{k}`` (1, n, n, C)                ``stages.{k-1}.pos_embed``
``blocks{k}.{j}.norm1 / norm2 / mlp.fc*``    ``stages.{k-1}.blocks.{j}.`` (same)
``...attn.high_mixer.{conv1,proj1,proj2}``   ``...mixer.high.{conv,dwconv,pool_proj}``
``...attn.low_mixer.qkv``                    ``...mixer.low.qkv``
``...attn.{conv_fuse,proj}``                 ``...mixer.{fuse,proj}``
``...layer_scale_{1,2}`` (stages 3-4)        ``...gamma{1,2}``
``norm`` (final LayerNorm)                   ``norm3`` (the stage-4 output norm)
``head`` (classifier)                        ``head`` (classifier only)
===========================================  ======================================

Backbone conversions drop ``head``; ``norm0`` .. ``norm2`` have no official counterpart
and keep their identity initialisation.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Union

from torch import Tensor

from .renaming import convert_by_renaming, target_shapes

__all__ = ['convert_official_iformer', 'convert_iformer_checkpoint', 'iformer_official_name',
           'is_official_iformer']

_STEM = {'conv1': 'proj1', 'bn1': 'norm1', 'conv2': 'proj2', 'bn2': 'norm2'}
_DOWN = {'conv': 'proj', 'bn': 'norm'}
# Inside a block: densebox prefix -> official prefix (everything else keeps its name).
_BLOCK = (('mixer.high.conv.', 'attn.high_mixer.conv1.'),
          ('mixer.high.dwconv.', 'attn.high_mixer.proj1.'),
          ('mixer.high.pool_proj.', 'attn.high_mixer.proj2.'),
          ('mixer.low.qkv.', 'attn.low_mixer.qkv.'),
          ('mixer.fuse.', 'attn.conv_fuse.'),
          ('mixer.proj.', 'attn.proj.'),
          ('gamma1', 'layer_scale_1'),
          ('gamma2', 'layer_scale_2'))
_NAMES = {'s': 'iFormer-S', 'b': 'iFormer-B', 'l': 'iFormer-L'}


def iformer_official_name(key: str) -> Optional[str]:
    """densebox key (of :class:`IFormer`, or of :class:`IFormerClassifier` with its
    ``backbone.`` prefix) -> official key; None for ``norm0`` .. ``norm2``."""
    if key.startswith('backbone.'):
        key = key[len('backbone.'):]
    m = re.fullmatch(r'stages\.(\d)\.(.+)', key)
    if m:
        stage, rest = int(m.group(1)), m.group(2)
        sub = re.fullmatch(r'downsample\.(\w+)\.(.+)', rest)
        if sub and stage == 0:
            return f'patch_embed.{_STEM[sub.group(1)]}.{sub.group(2)}'
        if sub:
            return f'patch_embed{stage + 1}.{_DOWN[sub.group(1)]}.{sub.group(2)}'
        if rest == 'pos_embed':
            return f'pos_embed{stage + 1}'
        block = re.fullmatch(r'blocks\.(\d+)\.(.+)', rest)
        if block:
            name = block.group(2)
            for ours, theirs in _BLOCK:
                if name.startswith(ours):
                    name = theirs + name[len(ours):]
                    break
            return f'blocks{stage + 1}.{block.group(1)}.{name}'
    if key.startswith('norm3.'):
        return 'norm.' + key[len('norm3.'):]
    if re.fullmatch(r'norm[0-2]\..+', key):
        return None
    if key.startswith('head.'):
        return key
    raise KeyError(f'iformer_official_name: no official name for densebox key {key!r}')


def is_official_iformer(state_dict: Dict[str, Tensor]) -> bool:
    """Whether a state dict has the official key layout."""
    return 'patch_embed.proj1.weight' in state_dict


def convert_official_iformer(state_dict: Dict[str, Tensor], arch: Union[str, dict] = 's',
                             pretrain_img_size: int = 224, with_head: bool = False,
                             prefix: str = '') -> 'OrderedDict[str, Tensor]':
    """Official iFormer state dict -> densebox state dict.

    Args:
        state_dict: the official weights (``model.state_dict()`` of ``iformer_small`` ...).
        arch: the densebox arch they belong to (``'s'`` | ``'b'`` | ``'l'`` or a dict).
        pretrain_img_size: 224, or 384 for the ``*_384`` checkpoints (positional embeddings
            of 96 / 48 / 24 / 12).
        with_head: convert to :class:`IFormerClassifier` keys (``backbone.*`` and ``head.*``)
            instead of backbone keys (the classifier head is then dropped).
        prefix: put before every output key (e.g. ``'backbone.'`` for a whole segmentor).

    Raises:
        CheckpointMismatchError: the file is not an official checkpoint of this arch / size;
        the message names the unexpected and missing keys and the shape mismatches.
    """
    from densebox.registry import MODELS  # the target architecture, by its registered name
    IFormer, IFormerClassifier = (MODELS.get('IFormer'), MODELS.get('IFormerClassifier'))
    if with_head:
        num_classes = state_dict['head.weight'].shape[0] if 'head.weight' in state_dict else 1000
        target = target_shapes(lambda: IFormerClassifier(arch, num_classes,
                                                         pretrain_img_size=pretrain_img_size))
    else:
        target = target_shapes(lambda: IFormer(arch, out_indices=(0, 1, 2, 3),
                                               pretrain_img_size=pretrain_img_size))
    name = _NAMES.get(arch, 'iFormer') if isinstance(arch, str) else 'iFormer'
    what = f'official {name} checkpoint at {pretrain_img_size}x{pretrain_img_size}'
    out = convert_by_renaming(state_dict, target, iformer_official_name, what,
                              ignore_prefixes=() if with_head else ('head.',))
    return OrderedDict((prefix + k, v) for k, v in out.items())


def convert_iformer_checkpoint(checkpoint: dict, cfg=None, arch: str = 's',
                               pretrain_img_size: int = 224) -> 'OrderedDict[str, Tensor]':
    """Model-zoo entry point: a loaded official checkpoint -> :class:`IFormer` backbone
    weights (``cfg`` is unused: these are backbone weights)."""
    state = checkpoint
    for key in ('state_dict', 'model', 'state_dict_ema'):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    return convert_official_iformer(state, arch, pretrain_img_size)

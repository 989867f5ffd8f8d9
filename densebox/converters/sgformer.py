"""Official SG-Former ImageNet checkpoints (OliverRensu/SG-Former, ``sgformer_{s,m,b}``) ->
densebox :class:`~densebox.models.backbones.SGFormer` / ``SGFormerClassifier``.

The layers are the same; only the names differ. Official -> densebox, from ``sgformer.py``:

- ``patch_embed1.conv.{0,2,4}.{c,bn}`` -> ``stages.0.downsample.conv{1,2,3}.{conv,norm}``;
  ``patch_embed1.norm`` -> ``stem_norm``; ``pos_embed`` (1, 56 * 56, C0) -> ``pos_embed``
- ``patch_embed{k}.conv{1,2,3}.{c,bn}`` (k > 1) ->
  ``stages.{k-1}.downsample.conv{1,2,3}.{conv,norm}``
- ``block{k}.{j}.{norm1,norm2,mlp.fc1,mlp.fc2}`` -> ``stages.{k-1}.blocks.{j}.`` (same names);
  ``...mlp.dwconv.dwconv`` -> ``...mlp.dwconv``
- every attention: ``lepe_linear`` / ``lepe_conv`` -> ``lepe.linear`` / ``lepe.conv``;
  ``proj`` (and stage 4's ``q``, ``kv``) keep their names
- hybrid-scale blocks: ``sr``, ``norm``, ``q1``, ``kv1``, ``q2``, ``kv2`` -> ``sr_conv``,
  ``sr_norm``, ``q_global``, ``kv_global``, ``q_local``, ``kv_local``
- self-guided blocks: ``q``, ``kv1``, ``kv2``, ``f1``, ``f2``, ``f3`` -> ``q``, ``kv_row``,
  ``kv_col``, ``merge.0``, ``merge.1``, ``merge.2``
- ``norm{k}`` -> ``stages.{k-1}.norm``; ``head`` -> ``head`` (classifier only)

Backbone conversions drop ``head``.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Union

from torch import Tensor

from .renaming import convert_by_renaming, target_shapes

__all__ = ['convert_official_sgformer', 'convert_sgformer_checkpoint',
           'sgformer_official_name', 'is_official_sgformer']

# densebox attention submodule -> official one (shared names are absent).
_ATTN = {'sr_conv': 'sr', 'sr_norm': 'norm', 'q_global': 'q1', 'kv_global': 'kv1',
         'q_local': 'q2', 'kv_local': 'kv2', 'kv_row': 'kv1', 'kv_col': 'kv2',
         'lepe.linear': 'lepe_linear', 'lepe.conv': 'lepe_conv'}
_NAMES = {'s': 'SG-Former-S', 'm': 'SG-Former-M', 'b': 'SG-Former-B'}


def sgformer_official_name(key: str) -> Optional[str]:
    """densebox key (of :class:`SGFormer`, or of ``SGFormerClassifier`` with its
    ``backbone.`` prefix) -> official key."""
    if key.startswith('backbone.'):
        key = key[len('backbone.'):]
    if key == 'pos_embed' or key.startswith('head.'):
        return key
    if key.startswith('stem_norm.'):
        return 'patch_embed1.norm.' + key[len('stem_norm.'):]
    m = re.fullmatch(r'stages\.(\d)\.(.+)', key)
    if not m:
        raise KeyError(f'sgformer_official_name: no official name for densebox key {key!r}')
    k, rest = int(m.group(1)) + 1, m.group(2)
    down = re.fullmatch(r'downsample\.conv([123])\.(conv|norm)\.(.+)', rest)
    if down:
        conv, part, param = int(down.group(1)), down.group(2), down.group(3)
        part = 'c' if part == 'conv' else 'bn'
        if k == 1:   # the stem is an nn.Sequential: convs at 0, 2, 4 with GELUs between
            return f'patch_embed1.conv.{2 * (conv - 1)}.{part}.{param}'
        return f'patch_embed{k}.conv{conv}.{part}.{param}'
    if rest.startswith('norm.'):
        return f'norm{k}.' + rest[len('norm.'):]
    block = re.fullmatch(r'blocks\.(\d+)\.(.+)', rest)
    if not block:
        raise KeyError(f'sgformer_official_name: no official name for densebox key {key!r}')
    name = block.group(2)
    if name.startswith('mlp.dwconv.'):
        name = 'mlp.dwconv.dwconv.' + name[len('mlp.dwconv.'):]
    elif name.startswith('attn.merge.'):
        index, param = name[len('attn.merge.'):].split('.', 1)
        name = f'attn.f{int(index) + 1}.{param}'
    elif name.startswith('attn.'):
        module, param = name[len('attn.'):].rsplit('.', 1)
        name = f'attn.{_ATTN.get(module, module)}.{param}'
    return f'block{k}.{block.group(1)}.{name}'


def is_official_sgformer(state_dict: Dict[str, Tensor]) -> bool:
    """Whether a state dict has the official key layout."""
    return 'patch_embed1.conv.0.c.weight' in state_dict


def convert_official_sgformer(state_dict: Dict[str, Tensor], arch: Union[str, dict] = 's',
                              pretrain_img_size: int = 224, with_head: bool = False,
                              prefix: str = '') -> 'OrderedDict[str, Tensor]':
    """Official SG-Former state dict -> densebox state dict.

    Args:
        state_dict: the official weights (``model.state_dict()`` of ``sgformer_s`` ...).
        arch: the densebox arch they belong to (``'s'`` | ``'m'`` | ``'b'`` or a dict).
        pretrain_img_size: the image size of the checkpoint (positional embedding of
            (size / 4)^2 tokens).
        with_head: convert to ``SGFormerClassifier`` keys (``backbone.*`` and ``head.*``)
            instead of backbone keys (the classifier head is then dropped).
        prefix: put before every output key.

    Raises:
        CheckpointMismatchError: the file is not an official checkpoint of this arch; the
        message names the unexpected and missing keys and the shape mismatches.
    """
    from densebox.registry import MODELS  # the target architecture, by its registered name
    SGFormer, SGFormerClassifier = (MODELS.get('SGFormer'), MODELS.get('SGFormerClassifier'))
    if with_head:
        num_classes = state_dict['head.weight'].shape[0] if 'head.weight' in state_dict else 1000
        target = target_shapes(lambda: SGFormerClassifier(arch, num_classes,
                                                          pretrain_img_size=pretrain_img_size))
    else:
        target = target_shapes(lambda: SGFormer(arch, pretrain_img_size=pretrain_img_size))
    name = _NAMES.get(arch, 'SG-Former') if isinstance(arch, str) else 'SG-Former'
    what = f'official {name} checkpoint at {pretrain_img_size}x{pretrain_img_size}'
    out = convert_by_renaming(state_dict, target, sgformer_official_name, what,
                              ignore_prefixes=() if with_head else ('head.',))
    return OrderedDict((prefix + k, v) for k, v in out.items())


def convert_sgformer_checkpoint(checkpoint: dict, cfg=None, arch: str = 's',
                                pretrain_img_size: int = 224) -> 'OrderedDict[str, Tensor]':
    """Model-zoo entry point: a loaded official checkpoint (a state dict, or a training
    checkpoint with ``state_dict`` / ``model`` / ``state_dict_ema``) -> :class:`SGFormer`
    backbone weights."""
    state = checkpoint
    for key in ('state_dict', 'model', 'state_dict_ema'):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    return convert_official_sgformer(state, arch, pretrain_img_size)

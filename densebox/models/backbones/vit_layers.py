"""Small pieces the transformer backbones (iFormer, SG-Former) share.

- :class:`DropPath`: stochastic depth on a residual branch.
- :func:`resize_pos_embed`: a positional-embedding grid resized (bilinear) to a feature size.
- :func:`run_blocks`: a sequence of blocks, optionally under gradient checkpointing.
- :func:`load_pretrained_backbone`: the ``init_cfg=dict(type='Pretrained', ...)`` loader of
  both backbones: a path, URL or ``zoo://NAME``, converted from the official layout when the
  keys are official ones.
"""
import os
from typing import Callable, Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class DropPath(nn.Module):
    """Stochastic depth (Huang et al.): in training, zero a sample's whole residual branch with
    probability ``p`` and scale the kept ones by ``1 / (1 - p)``. Any (B, ...) shape."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f'DropPath: p must be in [0, 1), got {p}')
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'p={self.p}'


def drop_path_rates(rate: float, depths: Sequence[int]) -> list:
    """Linearly increasing drop-path rates, 0 for the first block to ``rate`` for the last,
    split per stage: a list of per-block lists."""
    rates = torch.linspace(0, rate, sum(depths), device='cpu').tolist()
    out, start = [], 0
    for d in depths:
        out.append(rates[start:start + d])
        start += d
    return out


def resize_pos_embed(grid: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(1, C, h, w) positional embedding -> (1, C, *size): bilinear, ``align_corners=False``;
    the grid itself when it already has that size."""
    if tuple(grid.shape[-2:]) == tuple(size):
        return grid
    return F.interpolate(grid, size=tuple(int(s) for s in size), mode='bilinear',
                         align_corners=False)


def run_blocks(blocks: Sequence[nn.Module], x, use_checkpoint: bool, *args):
    """``x = block(x, *args)`` for each block; with ``use_checkpoint`` (and gradients on) each
    block's activations are recomputed in the backward pass instead of being stored."""
    for block in blocks:
        if use_checkpoint and torch.is_grad_enabled():
            x = checkpoint(block, x, *args, use_reentrant=False)
        else:
            x = block(x, *args)
    return x


def load_pretrained_backbone(module: nn.Module, init_cfg: dict,
                             is_official: Callable[[Dict[str, torch.Tensor]], bool],
                             convert: Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]],
                             optional_prefixes: Sequence[str] = (),
                             how_to_get: str = '') -> None:
    """Load ImageNet weights into a backbone, strictly.

    Args:
        module: the backbone.
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=None, download=None,
            allow_unverified=False)``. ``checkpoint`` is a local path, an ``http(s)://`` URL
            (read with ``weights_only``), or ``zoo://NAME`` for a densebox zoo entry
            (``densebox.zoo.get_checkpoint(NAME, download, allow_unverified)``, which names
            the file to fetch when it is not there). ``prefix`` keeps only the keys under it
            (e.g. ``'backbone.'``), stripped.
        is_official: tells an official-layout state dict from a densebox one.
        convert: official state dict -> densebox state dict (checks keys and shapes).
        optional_prefixes: densebox keys that the file may lack or hold in excess (output
            norms, which only some ``out_indices`` build); absent ones keep their initial
            values.
        how_to_get: a sentence on where the weights come from, added to the error when the
            file is not there.
    """
    from densebox.engine.checkpoint import safe_torch_load
    checkpoint_path = str(init_cfg['checkpoint'])
    prefix = init_cfg.get('prefix')
    scratch = ('To train from scratch on purpose, set the backbone\'s init_cfg=None '
               '(--cfg-options model.backbone.init_cfg=None).')
    if checkpoint_path.startswith('zoo://'):
        from densebox.zoo.hub import get_checkpoint
        try:
            checkpoint_path = get_checkpoint(
                checkpoint_path[len('zoo://'):], download=init_cfg.get('download'),
                allow_unverified=init_cfg.get('allow_unverified', False))
        except (FileNotFoundError, RuntimeError) as err:
            options = ('(in a config: init_cfg=dict(..., download=True, '
                       'allow_unverified=True)). ')
            raise type(err)(f'{err} {options}{scratch}') from err
    elif not checkpoint_path.startswith(('http://', 'https://')) and \
            not os.path.isfile(os.path.expanduser(checkpoint_path)):
        raise FileNotFoundError(f'pretrained weights {checkpoint_path} do not exist. '
                                f'{how_to_get} {scratch}'.replace('  ', ' '))
    if checkpoint_path.startswith(('http://', 'https://')):
        from torch.hub import load_state_dict_from_url
        ckpt = load_state_dict_from_url(checkpoint_path, map_location='cpu', weights_only=True)
    else:
        ckpt = safe_torch_load(os.path.expanduser(checkpoint_path), map_location='cpu')
    state = ckpt
    for key in ('state_dict', 'model', 'state_dict_ema', 'model_ema'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise RuntimeError(f'{checkpoint_path}: expected a state dict, got {type(state).__name__}')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if is_official(state):
        state = convert(state)
    own = module.state_dict()
    optional = tuple(optional_prefixes)
    state = {k: v for k, v in state.items() if k in own or not k.startswith(optional)}
    missing = [k for k in own if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in own]
    wrong = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
             for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise RuntimeError(
            f'{checkpoint_path} does not fit {type(module).__name__}'
            + (f'; missing: {missing[:8]}' if missing else '')
            + (f'; unexpected: {unexpected[:8]}' if unexpected else '')
            + (f'; shape mismatch: {wrong[:8]}' if wrong else '')
            + '. Is it the checkpoint of this arch? To train from scratch on purpose, set '
              'init_cfg=None.')
    module.load_state_dict(state, strict=False)

"""CLIP models from open_clip, with weights from local files.

densebox never re-implements CLIP's towers: :func:`build_clip` builds an ``open_clip.CLIP``
(from an open_clip model name such as ``'RN50'`` / ``'ViT-B-16'``, or from a model config
dict for small models of one's own) and loads its weights with :func:`load_clip_state_dict`,
which reads every format the weights are published in without running code from the file:

- OpenAI's releases (``RN50.pt``, ...) are TorchScript archives: read by
  :func:`densebox.engine.torchscript_weights.load_torchscript_state_dict`, never
  ``torch.jit.load``;
- open_clip's ``.pt`` / ``.bin`` checkpoints: ``torch.load(weights_only=True)``
  (:func:`densebox.engine.checkpoint.safe_torch_load`), with or without a ``state_dict``
  wrapper and DDP's ``module.`` prefix;
- ``.safetensors`` files.

A checkpoint is a local path or the name of a ``kind='clip'`` zoo entry (e.g.
``'clip_rn50_openai'``), which is looked up in the zoo cache and downloaded only when
allowed (:mod:`densebox.zoo`). A missing file is an error naming it and where it comes from.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict, Optional

import torch

__all__ = ['build_clip', 'clip_state_dict_from', 'clip_tokenizer', 'convert_clip_checkpoint',
           'load_clip_state_dict', 'resolve_clip_weights']

# Entries some published state dicts carry that are not weights of open_clip's CLIP
# (OpenAI's archives hold its sizes; attn_mask is a non-persistent buffer in open_clip).
_NOT_WEIGHTS = ('input_resolution', 'context_length', 'vocab_size', 'attn_mask')


def resolve_clip_weights(checkpoint: str, download: Optional[bool] = None) -> str:
    """Local path of ``checkpoint``: a file path, or a ``kind='clip'`` zoo entry's file.

    Raises:
        FileNotFoundError: naming the path (or the zoo entry, its cache path and URL).
    """
    path = osp.expanduser(str(checkpoint))
    if osp.isfile(path):
        return path
    from densebox.zoo.hub import cache_dir, list_models, source_path
    name = checkpoint[len('zoo://'):] if checkpoint.startswith('zoo://') else checkpoint
    if name in list_models('clip'):
        return source_path(name, download=download)
    known = ', '.join(list_models('clip'))
    raise FileNotFoundError(
        f'CLIP weights {checkpoint} not found: it is neither a file nor a CLIP entry of the '
        f'densebox zoo ({known}). Give the path of an OpenAI or open_clip checkpoint, or a zoo '
        f'name whose file is in {osp.join(cache_dir(), "downloads")}.')


def clip_state_dict_from(state: dict, path: str) -> Dict[str, torch.Tensor]:
    """The weights in a loaded CLIP checkpoint ``state`` (read from ``path``), unwrapped
    from ``state_dict`` / ``model`` and DDP's ``module.`` prefix, without the entries that
    are not weights."""
    for key in ('state_dict', 'model'):  # open_clip's training checkpoints, timm-style files
        if isinstance(state.get(key), dict):
            state = state[key]
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    not_tensors = [k for k, v in state.items()
                   if not isinstance(v, torch.Tensor) and k not in _NOT_WEIGHTS]
    if not_tensors:
        raise ValueError(f'{path} is not a CLIP state dict: {not_tensors[:5]} are not tensors')
    return {k: v for k, v in state.items() if k not in _NOT_WEIGHTS}


def load_clip_state_dict(checkpoint: str, download: Optional[bool] = None
                         ) -> Dict[str, torch.Tensor]:
    """The CLIP state dict (open_clip's key names) in ``checkpoint`` (a path or zoo name).

    Tensors keep the dtype of the file (OpenAI's are partly float16).
    """
    path = resolve_clip_weights(checkpoint, download=download)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(path)
    else:  # OpenAI's TorchScript archives included
        from densebox.engine.checkpoint import safe_torch_load
        state = safe_torch_load(path, map_location='cpu')
        if not isinstance(state, dict):
            raise ValueError(f'{path} holds a {type(state).__name__}, not a state dict')
    return clip_state_dict_from(dict(state), path)


def build_clip(model_name: Optional[str] = None, *, model_cfg: Optional[dict] = None,
               checkpoint: Optional[str] = None, quick_gelu: Optional[bool] = None,
               download: Optional[bool] = None) -> 'torch.nn.Module':
    """An ``open_clip.CLIP`` in float32, with the weights of ``checkpoint`` when given.

    Args:
        model_name: an open_clip model name (``open_clip.list_models()``), e.g. ``'RN50'``.
        model_cfg: instead of a name, the model config as open_clip's json files write it:
            ``dict(embed_dim=..., vision_cfg=dict(...), text_cfg=dict(...))``.
        checkpoint: a weights file or a ``kind='clip'`` zoo name; None keeps open_clip's
            random initialisation.
        quick_gelu: use QuickGELU as OpenAI's models were trained with. None: True when the
            checkpoint is one of OpenAI's TorchScript releases, else False.
        download: passed to the zoo when ``checkpoint`` is a zoo name.

    Raises:
        RuntimeError: the weights do not fit the model, naming the missing and unexpected
            keys and any shape mismatches.
    """
    import open_clip
    if (model_name is None) == (model_cfg is None):
        raise ValueError('build_clip needs exactly one of model_name and model_cfg')
    state = path = None
    if checkpoint is not None:
        path = resolve_clip_weights(checkpoint, download=download)
        state = load_clip_state_dict(path)
        if quick_gelu is None:
            from densebox.engine.torchscript_weights import is_torchscript_archive
            quick_gelu = is_torchscript_archive(path)
    quick_gelu = bool(quick_gelu)
    if model_name is not None:
        if model_name not in open_clip.list_models():
            raise KeyError(f'{model_name!r} is not an open_clip model name; known: '
                           f'{", ".join(open_clip.list_models())}')
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
    else:
        model = open_clip.CLIP(**model_cfg, quick_gelu=quick_gelu)
    model = model.float()
    if state is not None:
        _load_strict(model, state, path, model_name or 'the given model_cfg')
    return model


def _load_strict(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: str,
                 what: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}'
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise RuntimeError(
            f'{path} does not fit {what}: missing keys {missing[:8]}'
            f'{" ..." if len(missing) > 8 else ""}, unexpected keys {unexpected[:8]}'
            f'{" ..." if len(unexpected) > 8 else ""}, shape mismatches {shapes[:8]}')
    model.load_state_dict(state)


def clip_tokenizer(model_name: Optional[str] = None, context_length: Optional[int] = None):
    """open_clip's tokenizer for ``model_name`` (CLIP's BPE, shipped with open_clip, no
    download), as a callable ``texts -> LongTensor (N, context_length)``."""
    import open_clip
    if model_name is None:
        return open_clip.SimpleTokenizer(context_length=context_length or 77)
    return open_clip.get_tokenizer(model_name, context_length=context_length)


def convert_clip_checkpoint(checkpoint: dict, cfg=None) -> Dict[str, torch.Tensor]:
    """Model-zoo entry point: a loaded CLIP checkpoint (OpenAI's or open_clip's) ->
    open_clip's state dict in float32."""
    return {k: v.float() if v.is_floating_point() else v
            for k, v in clip_state_dict_from(checkpoint, 'the CLIP checkpoint').items()}

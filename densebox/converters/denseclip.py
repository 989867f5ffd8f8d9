"""DenseCLIP's released segmentation checkpoints (raoyongming/DenseCLIP, mmseg 0.x) ->
densebox.

The official model (``segmentation/denseclip/{denseclip.py, models.py}``) and densebox's
share most names; the mapping, written from the official definitions:

- ``backbone.*`` of ``CLIPResNetWithAttention`` / ``CLIPResNet`` (``conv1..3``, ``bn1..3``,
  ``layer1..4.<i>.{conv,bn}1..3`` and ``.downsample.{0,1}``, ``attnpool.{positional_embedding,
  q_proj, k_proj, v_proj, c_proj}``) and of ``CLIPVisionTransformer`` (``conv1``,
  ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.<i>.*``,
  ``ln_post``, ``proj``) are CLIP's own names: densebox holds open_clip's tower as
  ``backbone.visual``, so they become ``backbone.visual.*``. The ViT's ``fpn1..fpn4`` are
  densebox's own modules, laid out as the original's (``backbone.fpn1.{0,1,2,4}``, ...).
- ``text_encoder.*`` (``CLIPTextContextEncoder``: ``transformer.resblocks.<i>.{attn.in_proj_*,
  attn.out_proj.*, ln_1, mlp.c_fc, mlp.c_proj, ln_2}``, ``token_embedding``,
  ``positional_embedding`` (13 rows), ``ln_final``, ``text_projection``), ``context_decoder.*``,
  ``contexts`` (1, 8, 512), ``gamma``, ``neck.*`` (mmseg's FPN) and ``decode_head.*``
  (mmseg's FPNHead) keep their names.
- The ``IdentityHead`` that carries the pixel-text loss has no weights.

Every tensor keeps its shape and values; nothing needs re-arranging. The checkpoint's
``meta.CLASSES`` / ``PALETTE`` become ``meta.dataset_meta``.
"""
from typing import Dict, Optional

import torch

__all__ = ['convert_denseclip_state_dict', 'convert_denseclip_checkpoint',
           'denseclip_config_for']

_SAME_NAME = ('text_encoder.', 'context_decoder.', 'neck.', 'decode_head.', 'auxiliary_head.')
_VIT_OWN = ('fpn1.', 'fpn2.', 'fpn3.', 'fpn4.')


def convert_denseclip_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official DenseCLIP state dict -> densebox's :class:`DenseCLIP` (or the CLIP baseline
    :class:`EncoderDecoder`) state dict.

    Raises:
        KeyError: naming a key the official models do not have.
    """
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    out = {}
    for key, value in state.items():
        if key.startswith('backbone.'):
            rest = key[len('backbone.'):]
            out[key if rest.startswith(_VIT_OWN) else f'backbone.visual.{rest}'] = value
        elif key.startswith(_SAME_NAME) or key in ('contexts', 'gamma'):
            out[key] = value
        elif key.startswith('identity_head.'):
            continue  # the official IdentityHead drops its classifier; nothing to keep
        else:
            raise KeyError(f'{key!r} is not a key of an official DenseCLIP segmentor '
                           '(backbone, text_encoder, context_decoder, neck, decode_head, '
                           'contexts, gamma)')
    return out


def denseclip_config_for(state: Dict[str, torch.Tensor]) -> str:
    """The densebox config a converted state dict belongs to, told from its keys."""
    keys = set(state)
    if 'backbone.visual.class_embedding' in keys:
        return 'configs/denseclip_vitb16_fpn_ade20k.py'
    if 'text_encoder.positional_embedding' not in keys:
        return 'configs/clip_r50_fpn_ade20k.py'
    if 'backbone.visual.layer3.22.conv1.weight' in keys:
        return 'configs/denseclip_r101_fpn_ade20k.py'
    return 'configs/denseclip_r50_fpn_ade20k.py'


def convert_denseclip_checkpoint(checkpoint: dict, cfg=None) -> dict:
    """A loaded official checkpoint (``{'state_dict', 'meta'}`` or a bare state dict) ->
    ``{'state_dict', 'meta': {'dataset_meta': ...}}`` (the zoo's converter signature)."""
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError('not a DenseCLIP checkpoint: its state_dict is not a mapping of '
                         'names to tensors')
    meta: Dict[str, object] = {}
    source_meta: Optional[dict] = checkpoint.get('meta') if 'state_dict' in checkpoint else None
    if isinstance(source_meta, dict) and source_meta.get('CLASSES'):
        dataset_meta = {'classes': tuple(str(c).strip() for c in source_meta['CLASSES'])}
        if source_meta.get('PALETTE'):
            dataset_meta['palette'] = [tuple(int(v) for v in c) for c in source_meta['PALETTE']]
        meta['dataset_meta'] = dataset_meta
    return {'state_dict': convert_denseclip_state_dict(dict(state)), 'meta': meta}

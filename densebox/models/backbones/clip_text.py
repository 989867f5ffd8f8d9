"""CLIP's text tower from open_clip with learnable context tokens (CoOp-style prompting,
as DenseCLIP uses it).

A class name is tokenised to ``[SOS] name [EOS]`` padded to a few tokens (5 in DenseCLIP);
the encoder inserts ``N`` learned context vectors after ``[SOS]``, so the tower sees
``[SOS] ctx_1 .. ctx_N name [EOS] pad`` (13 tokens for N = 8), adds the first 13 rows of
CLIP's positional embedding, runs the causal transformer, and reads the feature at
``[EOS]`` through ``ln_final`` and ``text_projection``. The tower's weights are frozen by
default; gradients still flow through it to the contexts.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from densebox.registry import MODELS
from .clip_dense import Arch, build_clip_model, load_clip_tower_weights, load_strict

__all__ = ['CLIPTextContextEncoder', 'tokenize_class_names']

_TEXT_KEYS = ('transformer.', 'token_embedding.', 'positional_embedding', 'ln_final.',
              'text_projection')


def tokenize_class_names(names: Sequence[str], length: int) -> torch.Tensor:
    """CLIP BPE tokens ``[SOS] name [EOS] 0 ...`` of each name: (K, length) int64.

    Raises:
        ValueError: a name needs more than ``length`` tokens (naming it).
    """
    from .clip import clip_tokenizer
    with torch.device('cpu'):  # also when the model is being built on the meta device
        tokens = clip_tokenizer(context_length=77)(list(names))
    eos = tokens.argmax(dim=-1)  # [EOS] has the largest id of CLIP's vocabulary
    too_long = [(n, int(e) + 1) for n, e in zip(names, eos) if int(e) + 1 > length]
    if too_long:
        name, need = too_long[0]
        raise ValueError(f'class name {name!r} needs {need} CLIP tokens with [SOS] and [EOS], '
                         f'more than class_name_length={length} ({len(too_long)} names are '
                         f'too long); shorten the names or raise class_name_length (and the '
                         f"text encoder's context_length with it)")
    return tokens[:, :length].contiguous()


@MODELS.register_module()
class CLIPTextContextEncoder(BaseModule):
    """open_clip's text tower with context tokens spliced in after ``[SOS]``.

    The tower's modules are open_clip's (``transformer``, ``token_embedding``,
    ``positional_embedding``, ``ln_final``, ``text_projection``), held under the same names
    as in CLIP and in the DenseCLIP repository.

    Args:
        arch: open_clip model name (``'RN50'``, ``'ViT-B-16'``) or a model config dict.
        context_length: tokens the tower sees: class-name tokens + context tokens (13).
        quick_gelu: the activation OpenAI's CLIP was trained with (True for its weights).
        frozen: ``requires_grad=False`` on every weight of the tower (DenseCLIP).
        pretrained: CLIP weights (file or zoo name) loaded by ``init_weights()``; the
            positional embedding is cut to ``context_length`` rows.

    Forward: tokens (K, L) and contexts (B, N, width) with ``L + N == context_length`` ->
    (B, K, embed_dim) text features (not normalised).
    """

    def __init__(self, arch: Arch = 'RN50', context_length: int = 13, quick_gelu: bool = True,
                 frozen: bool = True, pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        clip = build_clip_model(arch, quick_gelu=quick_gelu, context_length=context_length,
                                keep='text')
        self.transformer = clip.transformer
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer('attn_mask', clip.attn_mask, persistent=False)
        if getattr(self.transformer, 'batch_first', True) is not True:
            raise ValueError('CLIPTextContextEncoder needs an open_clip text transformer that '
                             'takes (batch, tokens, width) input')
        self.context_length = int(context_length)
        self.width = self.token_embedding.embedding_dim
        proj = self.text_projection
        self.embed_dim = proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]
        self.frozen = frozen
        self.pretrained = pretrained
        if frozen:
            self.requires_grad_(False)

    def init_weights(self) -> None:
        super().init_weights()
        if self.pretrained is None:
            return
        state = load_clip_tower_weights(
            self.pretrained, lambda k: k if k.startswith(_TEXT_KEYS) else None, 'text_encoder')
        if 'positional_embedding' in state:
            state['positional_embedding'] = state['positional_embedding'][:self.context_length]
        load_strict(self, state, str(self.pretrained), 'text_encoder')

    def forward(self, text: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """tokens (K, L), contexts (B, N, width) -> (B, K, embed_dim)."""
        K, L = text.shape
        B, N, C = contexts.shape
        if L + N != self.context_length:
            raise ValueError(f'CLIPTextContextEncoder: {L} name tokens + {N} contexts != '
                             f'context_length {self.context_length}')
        x_text = self.token_embedding(text).to(contexts.dtype)             # (K, L, C)
        x_text = x_text.unsqueeze(0).expand(B, K, L, C)
        ctx = contexts.unsqueeze(1).expand(B, K, N, C)
        x = torch.cat([x_text[:, :, :1], ctx, x_text[:, :, 1:]], dim=2).reshape(B * K, L + N, C)
        x = x + self.positional_embedding.to(x.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        eos = (text.argmax(dim=-1) + N).repeat(B)                          # (B*K,)
        x = x[torch.arange(B * K, device=x.device), eos]
        proj = self.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x.reshape(B, K, -1)

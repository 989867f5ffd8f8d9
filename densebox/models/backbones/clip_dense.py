"""CLIP image towers from open_clip as dense-prediction backbones (DenseCLIP, Rao et al.,
CVPR'22).

The towers are open_clip's own modules, built by :func:`densebox.models.backbones.clip.build_clip`
and held as ``self.visual``; this file adds only what dense prediction needs around them:

- :class:`CLIPResNet` (RN50, RN101, ...): the stem and the four stages of open_clip's
  ``ModifiedResNet`` give C2-C5 (strides 4-32). With ``get_embeddings=True`` the attention
  pool is kept and run over *every* C5 position, not only the mean token
  (:func:`attention_pool_dense`): its output for the mean token is the global image
  embedding, its output at each position a dense embedding in CLIP's joint space.
- :class:`CLIPVisionTransformer` (ViT-B/16, ...): the tokens after blocks ``out_indices``
  (3, 5, 7, 11) become four maps of stride 4, 8, 16, 32 through transposed convs and a max
  pool, as in the DenseCLIP repository; with ``get_embeddings=True`` the last tokens go
  through ``ln_post`` and ``proj`` for the global (class token) and dense embeddings.

Positional embeddings are held at the training resolution (``input_resolution``) and
resized bilinearly to each input's grid in the forward pass. CLIP's weights are loaded by
``init_weights()`` (what mmengine's Runner calls before training), so building a model for
inference or for a converted checkpoint needs no CLIP file; the 224-pixel positional
embeddings of the CLIP release are resized to ``input_resolution`` on loading, as the
DenseCLIP repository does.
"""
import copy
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from densebox.registry import MODELS

__all__ = ['CLIPResNet', 'CLIPVisionTransformer', 'attention_pool_dense', 'clip_model_cfg',
           'build_clip_model', 'load_clip_tower_weights', 'resize_pos_embed']

Arch = Union[str, dict]


# ----------------------------------------------------------------------------- building
def clip_model_cfg(arch: Arch, image_size: Optional[int] = None,
                   context_length: Optional[int] = None) -> dict:
    """open_clip's model config for ``arch`` (a model name such as ``'RN50'`` or a config
    dict ``dict(embed_dim=..., vision_cfg=..., text_cfg=...)``), with the image tower built
    for ``image_size`` and the text tower for ``context_length`` tokens when given."""
    if isinstance(arch, str):
        import open_clip
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            raise KeyError(f'{arch!r} is not an open_clip model name; known: '
                           f'{", ".join(open_clip.list_models())}')
    elif isinstance(arch, dict):
        cfg = copy.deepcopy(dict(arch))
    else:
        raise TypeError(f'arch must be an open_clip model name or a model config dict, got '
                        f'{type(arch).__name__}')
    cfg.pop('quick_gelu', None)  # chosen by the quick_gelu argument of the wrappers
    if image_size is not None:
        cfg['vision_cfg'] = dict(cfg['vision_cfg'], image_size=int(image_size))
    if context_length is not None:
        cfg['text_cfg'] = dict(cfg['text_cfg'], context_length=int(context_length))
    return cfg


# Stand-ins for the tower a wrapper discards, so that building one tower does not pay for
# initialising the other (open_clip builds both).
_STUB_VISION = dict(image_size=16, layers=1, width=8, patch_size=16, head_width=8, mlp_ratio=1)
_STUB_TEXT = dict(context_length=2, vocab_size=2, width=8, heads=1, layers=1, mlp_ratio=1)


def build_clip_model(arch: Arch, quick_gelu: bool, image_size: Optional[int] = None,
                     context_length: Optional[int] = None, keep: str = 'both') -> nn.Module:
    """A randomly initialised open_clip CLIP of ``arch`` (weights come in ``init_weights``).

    ``keep='visual'`` / ``'text'``: only that tower is built as ``arch`` says; the other is
    a tiny stand-in, to be discarded by the caller.
    """
    from .clip import build_clip
    cfg = clip_model_cfg(arch, image_size, context_length)
    if keep == 'visual':
        cfg['text_cfg'] = dict(_STUB_TEXT)
    elif keep == 'text':
        cfg['vision_cfg'] = dict(_STUB_VISION)
    elif keep != 'both':
        raise ValueError(f"keep must be 'both', 'visual' or 'text', got {keep!r}")
    return build_clip(model_cfg=cfg, quick_gelu=quick_gelu)


def resize_pos_embed(pos: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """A (1 + S*S, C) positional embedding (the first row is the class / mean token's) with
    its S x S part resized bilinearly to ``grid`` = (h, w): -> (1 + h*w, C)."""
    cls_pos, spatial = pos[:1], pos[1:]
    side = int(round(math.sqrt(spatial.shape[0])))
    if side * side != spatial.shape[0]:
        raise ValueError(f'positional embedding of {pos.shape[0]} rows is not 1 + a square grid')
    if (side, side) == tuple(grid):
        return pos
    spatial = spatial.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=tuple(grid), mode='bilinear')
    return torch.cat([cls_pos, spatial.flatten(2)[0].t()], dim=0)


def load_clip_tower_weights(checkpoint: str, keep, owner: str) -> Dict[str, torch.Tensor]:
    """The entries of a CLIP checkpoint (path or zoo name) selected and renamed by ``keep``:
    ``keep(key) -> new key or None``. Float tensors come back as float32.

    Raises:
        FileNotFoundError: naming the file and how to start from random weights instead.
    """
    from .clip import load_clip_state_dict
    try:
        state = load_clip_state_dict(checkpoint)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f'{owner}: {err} To train from random weights on purpose, set '
            f'{owner}.pretrained=None (e.g. --cfg-options model.{owner}.pretrained=None).'
        ) from err
    out = {}
    for key, value in state.items():
        new = keep(key)
        if new is not None:
            out[new] = value.float() if value.is_floating_point() else value
    return out


def _visual_key(key: str) -> Optional[str]:
    """A CLIP checkpoint key of the image tower, relative to it ('visual.conv1.weight' ->
    'conv1.weight'); None for the text tower's keys."""
    return key[len('visual.'):] if key.startswith('visual.') else None


def load_strict(module: nn.Module, state: Dict[str, torch.Tensor], source: str,
                owner: str) -> None:
    """``module.load_state_dict(state)`` with an error naming the file and the keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}'
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise RuntimeError(f'{owner}: the CLIP weights {source} do not fit its architecture: '
                           f'missing {missing[:6]}, unexpected {unexpected[:6]}, shape '
                           f'mismatches {shapes[:6]}')
    module.load_state_dict(state)


# ------------------------------------------------------------------------ attention pool
def attention_pool_dense(attnpool: nn.Module, x: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """CLIP's attention pool run over the mean token and every position of a C5 map.

    The DenseCLIP repository's arithmetic: the tokens are [mean of the map; each position],
    the pool's positional embedding (held at an S x S grid) is resized bilinearly to the
    map's H x W, and one multi-head self-attention (the pool's q/k/v projections, ``c_proj``
    as output projection) runs over all H*W + 1 tokens.

    Args:
        attnpool: open_clip's ``AttentionPool2d`` (its weights only are used).
        x: (B, C, H, W) C5 features.

    Returns:
        global (B, D) (the mean token's output, what CLIP's image embedding is) and
        dense (B, D, H, W); D = ``attnpool.c_proj.out_features``.
    """
    B, C, H, W = x.shape
    tokens = x.reshape(B, C, H * W).permute(2, 0, 1)                     # (HW, B, C)
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0)  # (HW+1, B, C)
    pos = resize_pos_embed(attnpool.positional_embedding, (H, W))
    tokens = tokens + pos[:, None, :].to(tokens.dtype)
    out, _ = F.multi_head_attention_forward(
        query=tokens, key=tokens, value=tokens, embed_dim_to_check=C,
        num_heads=attnpool.num_heads,
        q_proj_weight=attnpool.q_proj.weight, k_proj_weight=attnpool.k_proj.weight,
        v_proj_weight=attnpool.v_proj.weight, in_proj_weight=None,
        in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias,
                                attnpool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=attnpool.c_proj.weight, out_proj_bias=attnpool.c_proj.bias,
        use_separate_proj_weight=True, training=attnpool.training, need_weights=False)
    out = out.permute(1, 2, 0)                                           # (B, D, HW+1)
    return out[:, :, 0], out[:, :, 1:].reshape(B, -1, H, W)


# ------------------------------------------------------------------------------- ResNet
@MODELS.register_module()
class CLIPResNet(BaseModule):
    """CLIP's modified ResNet (open_clip ``ModifiedResNet``) as a dense backbone.

    Args:
        arch: open_clip model name (``'RN50'``, ``'RN101'``) or a model config dict.
        input_resolution: the training crop; the attention pool's positional embedding is
            held at ``(input_resolution // 32) ** 2 + 1`` positions.
        get_embeddings: keep the attention pool and append its ``(global, dense)`` outputs
            (DenseCLIP); False drops it (the plain CLIP + Semantic FPN baseline).
        out_indices: which of C2..C5 (0..3) to return.
        pretrained: CLIP weights, a file or a ``kind='clip'`` zoo name
            (``'clip_rn50_openai'``), loaded by ``init_weights()``; None: random.
        init_cfg: mmengine init config (applied before ``pretrained``).

    Forward: (B, 3, H, W) -> tuple of the selected (B, 256 * 2**i * width / 64, H / 2**(i+2),
    W / 2**(i+2)) maps, then, with ``get_embeddings``, a pair ``(global (B, D),
    dense (B, D, H/32, W/32))`` (D = CLIP's embedding width, 1024 for RN50).
    """

    def __init__(self, arch: Arch = 'RN50', input_resolution: int = 224,
                 get_embeddings: bool = True, out_indices: Sequence[int] = (0, 1, 2, 3),
                 pretrained: Optional[str] = None, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        clip = build_clip_model(arch, quick_gelu=False, image_size=input_resolution,
                                keep='visual')
        visual = clip.visual
        if not hasattr(visual, 'attnpool') or not hasattr(visual, 'layer4'):
            raise ValueError(f'CLIPResNet: arch {arch!r} is not a CLIP ResNet '
                             f'(its image tower is {type(visual).__name__})')
        if not get_embeddings:
            visual.attnpool = None
        self.visual = visual
        self.get_embeddings = get_embeddings
        self.out_indices = tuple(int(i) for i in out_indices)
        if not all(0 <= i <= 3 for i in self.out_indices):
            raise ValueError(f'CLIPResNet: out_indices must be in 0..3, got {out_indices}')
        width = visual.layer1[0].conv1.in_channels
        self.stage_channels = [width * 4 * 2 ** i for i in range(4)]
        self.out_channels = [self.stage_channels[i] for i in self.out_indices]
        self.embed_dim = visual.output_dim if get_embeddings else None
        self.pretrained = pretrained

    def init_weights(self) -> None:
        super().init_weights()
        if self.pretrained is None:
            return
        state = load_clip_tower_weights(
            self.pretrained, _visual_key, 'backbone')
        if self.get_embeddings:
            key = 'attnpool.positional_embedding'
            if key in state:
                side = int(round(math.sqrt(self.visual.attnpool.positional_embedding.shape[0] - 1)))
                state[key] = resize_pos_embed(state[key], (side, side))
        else:
            state = {k: v for k, v in state.items() if not k.startswith('attnpool.')}
        load_strict(self.visual, state, str(self.pretrained), 'backbone')

    def forward(self, x: torch.Tensor) -> tuple:
        """(B, 3, H, W) -> selected C2..C5 [+ (global, dense)] (see the class docstring)."""
        x = self.visual.stem(x.to(self.visual.conv1.weight.dtype))
        stages = []
        for layer in (self.visual.layer1, self.visual.layer2, self.visual.layer3,
                      self.visual.layer4):
            x = layer(x)
            stages.append(x)
        outs = [stages[i] for i in self.out_indices]
        if self.get_embeddings:
            outs.append(attention_pool_dense(self.visual.attnpool, stages[3]))
        return tuple(outs)


# ---------------------------------------------------------------------------------- ViT
def _block_forward(block: nn.Module, x: torch.Tensor, drop_path: nn.Module) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock`` on (B, N, C) tokens, with stochastic depth on
    both residual branches (the DenseCLIP repository trains its ViT with drop path)."""
    x = x + drop_path(block.ls_1(block.attention(q_x=block.ln_1(x))))
    return x + drop_path(block.ls_2(block.mlp(block.ln_2(x))))


@MODELS.register_module()
class CLIPVisionTransformer(BaseModule):
    """CLIP's ViT (open_clip ``VisionTransformer``) with multi-scale outputs.

    The patch tokens after blocks ``out_indices`` (a (B, C, H/p, W/p) map each) go through
    ``fpn1..fpn4``; for patch 16: 2x transposed conv - BN - GELU - 2x transposed conv (stride
    4), 2x transposed conv (stride 8), identity (16), 2x2 max pool (32), each after a
    GroupNorm(1, C); patch 8 uses 2x up / identity / 2x and 4x max pools.

    Args:
        arch: open_clip model name (``'ViT-B-16'``) or a model config dict.
        input_resolution: the training crop (640 in the DenseCLIP recipe); the positional
            embedding is held at ``(input_resolution // patch) ** 2 + 1`` positions.
        out_indices: blocks whose tokens give the four levels (DenseCLIP: 3, 5, 7, 11).
        drop_path_rate: stochastic depth, rising linearly from 0 over the blocks.
        get_embeddings: append ``(global (B, D), dense (B, D, H/p, W/p))`` after ``ln_post``
            and ``proj``; False drops those two.
        quick_gelu: the activation OpenAI's CLIP was trained with (True for its weights).
        norm_cfg: norm of the BN inside ``fpn1`` (SyncBN in the recipe).
        pretrained: CLIP weights (file or zoo name) loaded by ``init_weights()``.

    Forward: (B, 3, H, W) -> four (B, C, H/s, W/s) maps, s = 4, 8, 16, 32 (patch 16),
    [+ (global, dense)].
    """

    def __init__(self, arch: Arch = 'ViT-B-16', input_resolution: int = 224,
                 out_indices: Sequence[int] = (3, 5, 7, 11), drop_path_rate: float = 0.0,
                 get_embeddings: bool = True, quick_gelu: bool = True,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 pretrained: Optional[str] = None, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        from timm.layers import DropPath
        clip = build_clip_model(arch, quick_gelu=quick_gelu, image_size=input_resolution,
                                keep='visual')
        visual = clip.visual
        if not hasattr(visual, 'class_embedding'):
            raise ValueError(f'CLIPVisionTransformer: arch {arch!r} is not a CLIP ViT '
                             f'(its image tower is {type(visual).__name__})')
        if getattr(visual.transformer, 'batch_first', True) is not True:
            raise ValueError('CLIPVisionTransformer needs an open_clip transformer that takes '
                             '(batch, tokens, width) input')
        if not get_embeddings:
            visual.ln_post, visual.proj = nn.Identity(), None
        self.visual = visual
        self.get_embeddings = get_embeddings
        self.patch_size = int(visual.conv1.kernel_size[0])
        self.spatial_size = input_resolution // self.patch_size
        depth = len(visual.transformer.resblocks)
        self.out_indices = tuple(int(i) for i in out_indices)
        if len(self.out_indices) != 4 or not all(0 <= i < depth for i in self.out_indices):
            raise ValueError(f'CLIPVisionTransformer: out_indices must be 4 block indices in '
                             f'0..{depth - 1}, got {out_indices}')
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.drop_paths = nn.ModuleList(DropPath(r) if r > 0 else nn.Identity() for r in rates)

        dim = visual.conv1.out_channels
        self.embed_dim = visual.output_dim if get_embeddings else None
        self.out_channels = [dim] * 4

        def up():
            return nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)

        if self.patch_size == 16:
            self.fpn1 = nn.Sequential(nn.GroupNorm(1, dim), up(),
                                      build_norm_layer(norm_cfg, dim)[1], nn.GELU(), up())
            self.fpn2 = nn.Sequential(nn.GroupNorm(1, dim), up())
            self.fpn3 = nn.GroupNorm(1, dim)
            self.fpn4 = nn.Sequential(nn.GroupNorm(1, dim), nn.MaxPool2d(2, 2))
        elif self.patch_size == 8:
            self.fpn1 = nn.Sequential(nn.GroupNorm(1, dim), up())
            self.fpn2 = nn.GroupNorm(1, dim)
            self.fpn3 = nn.Sequential(nn.GroupNorm(1, dim), nn.MaxPool2d(2, 2))
            self.fpn4 = nn.Sequential(nn.GroupNorm(1, dim), nn.MaxPool2d(4, 4))
        else:
            raise ValueError(f'CLIPVisionTransformer: patch size {self.patch_size} has no '
                             'multi-scale layout (16 and 8 do)')
        self.pretrained = pretrained

    def init_weights(self) -> None:
        super().init_weights()
        if self.pretrained is None:
            return
        state = load_clip_tower_weights(
            self.pretrained, _visual_key, 'backbone')
        if 'positional_embedding' in state:
            state['positional_embedding'] = resize_pos_embed(
                state['positional_embedding'], (self.spatial_size, self.spatial_size))
        if not self.get_embeddings:
            state = {k: v for k, v in state.items() if not k.startswith(('ln_post.', 'proj'))}
        load_strict(self.visual, state, str(self.pretrained), 'backbone')

    def forward(self, x: torch.Tensor) -> tuple:
        """(B, 3, H, W) -> four multi-scale maps [+ (global, dense)]."""
        v = self.visual
        x = v.conv1(x.to(v.conv1.weight.dtype))                           # (B, C, h, w)
        B, C, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)                                   # (B, hw, C)
        cls = v.class_embedding.to(x.dtype).expand(B, 1, C)
        x = torch.cat([cls, x], dim=1)
        pos = resize_pos_embed(v.positional_embedding.to(x.dtype), (h, w))
        # As in the DenseCLIP repository: its class token gets the class embedding twice
        # (once as the token, once added to its positional embedding); released DenseCLIP
        # ViT weights were trained so.
        pos = torch.cat([pos[:1] + v.class_embedding.to(x.dtype), pos[1:]], dim=0)
        x = v.ln_pre(x + pos)
        levels: List[torch.Tensor] = []
        for i, block in enumerate(v.transformer.resblocks):
            x = _block_forward(block, x, self.drop_paths[i])
            if i in self.out_indices:
                levels.append(x[:, 1:].transpose(1, 2).reshape(B, C, h, w))
        outs = [op(f) for op, f in zip((self.fpn1, self.fpn2, self.fpn3, self.fpn4), levels)]
        if self.get_embeddings:
            x = v.ln_post(x) @ v.proj                                      # (B, 1+hw, D)
            outs.append((x[:, 0], x[:, 1:].transpose(1, 2).reshape(B, -1, h, w)))
        return tuple(outs)

"""Dense feature extractors for ReCo's co-segmentation and scoring.

Each is an ``nn.Module`` mapping RGB images in [0, 1], (B, 3, H, W), to a feature map
(B, C, h, w), normalising the images itself (ImageNet mean / std for timm ViTs, CLIP's for
CLIP), and describes itself with :meth:`describe` (what an artifact records):

- :class:`TimmViTFeatures`: the last layer's patch tokens (after the final norm, class /
  distillation tokens dropped) of a timm ViT built with ``pretrained=False`` and loaded from
  a local file: ReCo's DeiT-S/16-SIN (``deit_small_distilled_patch16_224`` + the
  Stylized-ImageNet checkpoint of Naseer et al.) or DINO ViT-S/16 (``vit_small_patch16_224`` +
  ``dino_deitsmall16_pretrain.pth``). 384-d at stride 16.
- :class:`CLIPImageFeatures`: a stage of a CLIP ResNet image tower (C4 at stride 16 ...), or
  its MaskCLIP map (``stage='maskclip'``).

Build one from a config with :func:`build_extractor`.
"""
import os.path as osp
from typing import Optional, Union

import torch
import torch.nn as nn

from densebox.models.backbones.maskclip import CLIP_MEAN, CLIP_STD, MaskCLIP, clip_stage_features
from .fingerprint import weights_digest

__all__ = ['TimmViTFeatures', 'CLIPImageFeatures', 'build_extractor', 'IMAGENET_MEAN',
           'IMAGENET_STD']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Normalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean.to(x)) / self.std.to(x)


def _vit_state_dict(path: str) -> dict:
    from densebox.engine.checkpoint import safe_torch_load
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'ViT weights {path} not found. Put the file there (README: "Open-vocabulary '
            'segmentation", weights for ReCo) or point the config at it.')
    state = safe_torch_load(path, map_location='cpu')
    for key in ('model', 'state_dict', 'teacher'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f'{path} holds a {type(state).__name__}, not a state dict')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    state = {k[len('backbone.'):] if k.startswith('backbone.') else k: v
             for k, v in state.items()}
    return state


class TimmViTFeatures(nn.Module):
    """Last-layer patch tokens of a timm ViT as a (B, C, H/p, W/p) map.

    Args:
        model_name: a timm model name, e.g. ``'deit_small_distilled_patch16_224'``
            (DeiT-S/16-SIN) or ``'vit_small_patch16_224'`` (DINO ViT-S/16).
        checkpoint: local weights file (timm / DeiT / DINO key names; ``model`` /
            ``state_dict`` / ``teacher`` wrappers and ``module.`` / ``backbone.`` prefixes are
            unwrapped, classifier heads ignored). None: random weights, for tests only.
        mean / std: the normalisation the weights were trained with (ImageNet's).
        model_kwargs: passed to ``timm.create_model``.

    Input sizes need not be 224: positional embeddings are resized (timm's
    ``dynamic_img_size``); H and W should be multiples of the patch size.
    """

    def __init__(self, model_name: str = 'deit_small_distilled_patch16_224',
                 checkpoint: Optional[str] = None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 model_kwargs: Optional[dict] = None):
        super().__init__()
        import timm
        self.model_name = model_name
        self.checkpoint = checkpoint
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0,
                                       dynamic_img_size=True, **(model_kwargs or {}))
        if checkpoint is not None:
            self._load(checkpoint)
        self.normalise = _Normalise(mean, std)
        self.patch_size = self.model.patch_embed.patch_size[0]
        self.num_prefix_tokens = int(getattr(self.model, 'num_prefix_tokens', 1))
        self.out_channels = int(self.model.embed_dim)
        self.requires_grad_(False).eval()

    def _load(self, path: str) -> None:
        state = _vit_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith(('head', 'fc_norm'))}
        expected = self.model.state_dict()
        if 'pos_embed' in state and state['pos_embed'].shape != expected['pos_embed'].shape:
            raise RuntimeError(f'{path}: pos_embed {tuple(state["pos_embed"].shape)} does not fit '
                               f'{self.model_name} ({tuple(expected["pos_embed"].shape)}); is it '
                               'the right model name?')
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or shapes:
            raise RuntimeError(f'{path} does not fit timm {self.model_name}: missing keys '
                               f'{missing[:6]}, unexpected keys {unexpected[:6]}, shape '
                               f'mismatches {shapes[:6]}')
        self.model.load_state_dict(state)

    def train(self, mode: bool = True):
        return super().train(False)  # a frozen feature extractor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        tokens = self.model.forward_features(self.normalise(images))  # (B, T, C), normed
        tokens = tokens[:, self.num_prefix_tokens:]
        h, w = H // self.patch_size, W // self.patch_size
        return tokens.transpose(1, 2).reshape(B, -1, h, w)

    def describe(self) -> dict:
        return dict(type='TimmViTFeatures', model_name=self.model_name,
                    weights=weights_digest(self.model))


class CLIPImageFeatures(nn.Module):
    """A CLIP ResNet image tower's stage map, or its MaskCLIP map.

    Args:
        clip: an ``open_clip.CLIP`` with a ModifiedResNet image tower (shared, not copied).
        stage: 1..4 for C2..C5 (strides 4..32), or ``'maskclip'``.
    """

    def __init__(self, clip: nn.Module, stage: Union[int, str] = 3):
        super().__init__()
        if stage != 'maskclip' and stage not in (1, 2, 3, 4):
            raise ValueError(f"CLIPImageFeatures: stage must be 1..4 or 'maskclip', got "
                             f'{stage!r}')
        self.stage = stage
        self.maskclip = MaskCLIP(clip)
        self.normalise = _Normalise(CLIP_MEAN, CLIP_STD)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.stage == 'maskclip':
            return self.maskclip(images)
        return clip_stage_features(self.maskclip.visual, self.normalise(images), (self.stage,))[0]

    def describe(self) -> dict:
        return dict(type='CLIPImageFeatures', stage=self.stage,
                    weights=weights_digest(self.maskclip.visual))


def build_extractor(cfg: dict, clip: Optional[nn.Module] = None) -> nn.Module:
    """An extractor from ``dict(type='TimmViTFeatures', ...)`` or
    ``dict(type='CLIPImageFeatures', stage=...)`` (which uses ``clip``, the segmenter's
    MaskCLIP CLIP, unless the config builds its own with ``clip=dict(...)``)."""
    cfg = dict(cfg)
    kind = cfg.pop('type', None)
    if kind == 'TimmViTFeatures':
        return TimmViTFeatures(**cfg)
    if kind == 'CLIPImageFeatures':
        clip_cfg = cfg.pop('clip', None)
        if clip_cfg is not None:
            from densebox.models.backbones.clip import build_clip
            clip = build_clip(**clip_cfg)
        if clip is None:
            raise ValueError('CLIPImageFeatures needs a CLIP: give clip=dict(model_name=..., '
                             'checkpoint=...) in its config')
        return CLIPImageFeatures(clip, **cfg)
    raise KeyError(f"unknown dense feature extractor type {kind!r}; expected "
                   "'TimmViTFeatures' or 'CLIPImageFeatures'")

"""DenseCLIP (Rao et al., "DenseCLIP: Language-Guided Dense Prediction with Context-Aware
Prompting", CVPR'22): a CLIP image tower, the class names through CLIP's text tower, and
pixel-text score maps guiding a Semantic FPN.

One forward pass (shapes for RN50 at 512 x 512, K classes, D = 1024)::

    backbone(img)   -> C2..C5 (B, 256..2048, 128..16, 128..16),
                       global (B, D) and dense (B, D, 16, 16) CLIP embeddings
    text_encoder(class tokens, contexts) -> t (1, K, D)     [cached in inference]
    t = t + gamma * context_decoder(t, [global; dense])    -> (B, K, D)
    score map s = <dense / |dense|, t / |t|>                -> (B, K, 16, 16)
    C5 <- concat(C5, s)                                     (B, 2048 + K, 16, 16)
    neck (FPN) -> decode_head (Semantic FPN) -> (B, K, 128, 128) logits

Losses: the decode head's cross-entropy, and the pixel-text loss: cross-entropy of
``s / tau`` (tau = 0.07) resized to the label, weighted 0.4.

Everything else (slide inference, predict's un-padding and resizing, auxiliary heads) is
:class:`EncoderDecoder`'s. The text features of the class names depend only on the learned
contexts and the frozen text tower, so outside training (model in eval mode, no gradients)
they are computed once and cached; the cache is keyed by the weights' version counters
and storage (an optimiser step, ``load_state_dict`` or ``.to()`` makes it stale; writing
through ``param.data`` does not, call :meth:`cache_text_features` after that).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from densebox.registry import DATASETS, MODELS
from densebox.models.seg_heads.decode_head import pixel_accuracy
from densebox.models.utils import resize
from .encoder_decoder import EncoderDecoder

__all__ = ['DenseCLIP']


def _class_names(class_names: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """A sequence of names, or the name of a registered data set whose classes to use."""
    if isinstance(class_names, str):
        dataset = DATASETS.get(class_names)  # the registry imports densebox.datasets
        if dataset is None or 'classes' not in getattr(dataset, 'METAINFO', {}):
            raise KeyError(f'DenseCLIP: class_names={class_names!r} is neither a list of names '
                           'nor a registered data set with METAINFO classes')
        return tuple(dataset.METAINFO['classes'])
    names = tuple(str(n) for n in class_names)
    if not names:
        raise ValueError('DenseCLIP: class_names is empty')
    return names


@MODELS.register_module()
class DenseCLIP(EncoderDecoder):
    """DenseCLIP segmentor (see the module docstring).

    Args:
        backbone: a CLIP image tower with ``get_embeddings=True`` (:class:`CLIPResNet`,
            :class:`CLIPVisionTransformer`): returns levels then ``(global, dense)``.
        text_encoder: :class:`CLIPTextContextEncoder` config.
        context_decoder: :class:`ContextDecoder` config.
        decode_head, neck, auxiliary_head, train_cfg, test_cfg, data_preprocessor,
            init_cfg: as :class:`EncoderDecoder` (the neck gets the levels with the score
            map concatenated; auxiliary heads get the neck's outputs).
        class_names: the class names, in label order, or the registry name of a data set
            (``'ADE20KDataset'``) whose ``METAINFO['classes']`` to use.
        class_name_length: tokens of ``[SOS] name [EOS]`` (padded); the learnable contexts
            are ``text_encoder.context_length - class_name_length`` tokens (13 - 5 = 8).
            (The DenseCLIP repository calls this ``context_length``.)
        score_concat_index: the backbone level the score map is concatenated to (3: C5 of
            a ResNet; 2: the stride-16 level of a ViT).
        tau: temperature of the pixel-text loss.
        pixel_text_loss: loss config of the score map (cross-entropy, weight 0.4); None
            trains without it.
    """

    def __init__(self, backbone: dict, text_encoder: dict, context_decoder: dict,
                 decode_head: dict, class_names: Union[str, Sequence[str]],
                 neck: Optional[dict] = None, class_name_length: int = 5,
                 score_concat_index: int = 3, tau: float = 0.07,
                 pixel_text_loss: Optional[dict] = dict(type='CrossEntropyLoss',
                                                        loss_weight=0.4),
                 auxiliary_head: Optional[Union[dict, Sequence[dict]]] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck,
                         auxiliary_head=auxiliary_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.text_encoder = MODELS.build(text_encoder)
        self.context_decoder = MODELS.build(context_decoder)
        self.class_names = _class_names(class_names)
        if len(self.class_names) != self.num_classes:
            raise ValueError(f'DenseCLIP: {len(self.class_names)} class names for a decode '
                             f'head of {self.num_classes} classes')
        from densebox.models.backbones.clip_text import tokenize_class_names
        self.register_buffer('class_tokens',
                             tokenize_class_names(self.class_names, class_name_length),
                             persistent=False)                                  # (K, L)
        num_contexts = self.text_encoder.context_length - class_name_length
        if num_contexts < 1:
            raise ValueError(f'DenseCLIP: text_encoder.context_length '
                             f'{self.text_encoder.context_length} leaves no room for '
                             f'contexts after {class_name_length} class-name tokens')
        text_dim = self.text_encoder.embed_dim
        visual_dim = getattr(self.backbone, 'embed_dim', None)
        if visual_dim != text_dim or self.context_decoder.visual_dim != text_dim:
            raise ValueError(f'DenseCLIP: the backbone embeds to {visual_dim}, the text '
                             f'encoder to {text_dim} and the context decoder expects '
                             f'{self.context_decoder.visual_dim}; they must agree (does the '
                             'backbone have get_embeddings=True?)')
        self.score_concat_index = int(score_concat_index)
        self._check_neck_channels()
        self.tau = float(tau)
        # CoOp-style contexts shared by all classes, and the residual scale of the decoder.
        self.contexts = nn.Parameter(torch.empty(1, num_contexts, self.text_encoder.width))
        nn.init.trunc_normal_(self.contexts)
        self.gamma = nn.Parameter(torch.full((text_dim,), 1e-4))
        self.pixel_text_loss = (MODELS.build(dict(pixel_text_loss))
                                if pixel_text_loss is not None else None)
        self._text_cache: Optional[Tuple[tuple, torch.Tensor]] = None

    def _check_neck_channels(self) -> None:
        """The neck must expect the score map's K channels on the level it is added to."""
        levels = getattr(self.backbone, 'out_channels', None)
        expected = getattr(self.neck, 'in_channels', None)
        i = self.score_concat_index
        if levels is None or expected is None:
            return
        if not 0 <= i < len(levels):
            raise ValueError(f'DenseCLIP: score_concat_index {i} is not one of the backbone\'s '
                             f'{len(levels)} levels')
        want = list(levels)
        want[i] += self.num_classes
        if list(expected) != want:
            raise ValueError(f'DenseCLIP: neck.in_channels is {list(expected)} but the backbone '
                             f'gives {list(levels)} with the {self.num_classes}-class score '
                             f'map added to level {i}: {want}')

    # ------------------------------------------------------------------ text features
    def _text_cache_key(self) -> tuple:
        # In-place updates (optimiser steps, load_state_dict) bump a tensor's version
        # counter; replaced tensors (.to(), .double()) change its storage.
        params = (self.contexts, *self.text_encoder.parameters())
        return tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params)

    def text_features(self) -> torch.Tensor:
        """(1, K, D) text features of the class names with the current contexts.

        Computed afresh in training or when gradients are enabled; otherwise cached.
        """
        if self.training or torch.is_grad_enabled():
            return self.text_encoder(self.class_tokens, self.contexts)
        key = self._text_cache_key()
        if self._text_cache is None or self._text_cache[0] != key:
            self._text_cache = (key, self.text_encoder(self.class_tokens, self.contexts))
        return self._text_cache[1]

    def cache_text_features(self) -> torch.Tensor:
        """Compute and cache the text features now, whatever the mode (e.g. before tracing
        an ONNX export, so that the graph holds them as a constant): (1, K, D)."""
        with torch.no_grad():
            feats = self.text_encoder(self.class_tokens, self.contexts)
        self._text_cache = (self._text_cache_key(), feats)
        return feats

    # ------------------------------------------------------------------ network
    def forward_features(self, inputs: torch.Tensor
                         ) -> Tuple[Tuple[torch.Tensor, ...], torch.Tensor]:
        """(B, 3, H, W) -> (neck outputs, score map (B, K, h, w)) (see the module docstring)."""
        outs = self.backbone(inputs)
        levels, (global_feat, dense) = list(outs[:-1]), outs[-1]
        B, C, h, w = dense.shape
        visual_context = torch.cat([global_feat.reshape(B, C, 1), dense.reshape(B, C, h * w)],
                                   dim=2).permute(0, 2, 1)                   # (B, 1+hw, C)
        text = self.text_features().expand(B, -1, -1)                        # (B, K, C)
        text = text + self.gamma * self.context_decoder(text, visual_context)
        score_map = torch.einsum('bchw,bkc->bkhw', F.normalize(dense, dim=1),
                                 F.normalize(text, dim=2))
        i = self.score_concat_index
        levels[i] = torch.cat([levels[i], score_map], dim=1)
        feats = self.neck(levels) if self.neck is not None else levels
        return tuple(feats), score_map

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> the features the decode head takes."""
        return self.forward_features(inputs)[0]

    # ------------------------------------------------------------------ training
    def loss(self, inputs: torch.Tensor, data_samples: List) -> Dict[str, torch.Tensor]:
        """Decode-head losses (``decode.*``), the pixel-text loss (``pixel_text.*``) and
        auxiliary-head losses (``aux.*``)."""
        if not data_samples:
            raise ValueError('DenseCLIP.loss: data_samples with gt_sem_seg are required')
        feats, score_map = self.forward_features(inputs)
        losses = {f'decode.{k}': v
                  for k, v in self.decode_head.loss(feats, data_samples).items()}
        if self.pixel_text_loss is not None:
            losses.update(self.loss_pixel_text(score_map, data_samples))
        if self.auxiliary_head is not None:
            heads = (list(enumerate(self.auxiliary_head)) if self.aux_is_list
                     else [(None, self.auxiliary_head)])
            for idx, head in heads:
                prefix = 'aux' if idx is None else f'aux_{idx}'
                losses.update({f'{prefix}.{k}': v
                               for k, v in head.loss(feats, data_samples).items()})
        return losses

    def loss_pixel_text(self, score_map: torch.Tensor, data_samples: List
                        ) -> Dict[str, torch.Tensor]:
        """Cross-entropy of ``score_map / tau`` (B, K, h, w), resized bilinearly to the
        labels (B, H, W): ``{'pixel_text.loss_ce', 'pixel_text.acc_seg'}``."""
        label = torch.stack([s.gt_sem_seg.data for s in data_samples]).squeeze(1).long()
        label = label.to(score_map.device)
        logits = resize(score_map / self.tau, label.shape[-2:], 'bilinear', False)
        ignore = self.decode_head.ignore_index
        loss = self.pixel_text_loss(logits, label, ignore_index=ignore)
        return {f'pixel_text.{self.pixel_text_loss.loss_name}': loss,
                'pixel_text.acc_seg': pixel_accuracy(logits.detach(), label, ignore)}

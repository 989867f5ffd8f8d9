"""Encoder-decoder semantic segmentor: backbone -> (neck) -> decode head (+ auxiliary heads).

``forward(inputs, data_samples, mode)``:

- ``'loss'``: ``{'decode.loss_ce': ..., 'decode.acc_seg': ..., 'aux.loss_ce': ...}``
  (``aux_0.``, ``aux_1.`` ... when ``auxiliary_head`` is a list);
- ``'predict'``: the data samples with ``seg_logits`` (C, H, W) and ``pred_sem_seg``
  (1, H, W) in ORIGINAL image pixels: the padding is cut off using ``img_shape``, a test-
  time flip (``flip=True`` in the metainfo) is undone, and the logits are resized
  (bilinear) to ``ori_shape``;
- ``'tensor'``: the decode head's raw (B, C, h, w) logits.

Inference runs on the whole padded image (``test_cfg=dict(mode='whole')``) or on sliding
windows (``dict(mode='slide', crop_size=(h, w), stride=(sh, sw))``): all windows of the
batch go through the network together (``batch_windows`` at a time when given) and the
logits of overlapping windows are averaged.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from mmengine.structures import PixelData

from densebox.registry import MODELS
from densebox.structures import SegDataSample
from densebox.models.utils import resize


@MODELS.register_module()
class EncoderDecoder(BaseModel):
    """Semantic segmentation with one decode head and optional auxiliary heads.

    Args:
        backbone: backbone config (returns a tuple of features).
        decode_head: decode head config (a :class:`BaseDecodeHead` subclass).
        neck: optional neck config applied to the backbone features.
        auxiliary_head: optional head config, or a list of them; used for the loss only.
        train_cfg: unused, kept for config compatibility.
        test_cfg: ``dict(mode='whole')`` or ``dict(mode='slide', crop_size=(h, w),
            stride=(sh, sw), batch_windows=None)``.
        data_preprocessor: e.g. ``dict(type='SegDataPreprocessor', ...)``.
        init_cfg: mmengine init config.
    """

    def __init__(self, backbone: dict, decode_head: dict, neck: Optional[dict] = None,
                 auxiliary_head: Optional[Union[dict, Sequence[dict]]] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.decode_head = MODELS.build(decode_head)
        self.num_classes = self.decode_head.num_classes
        self.align_corners = self.decode_head.align_corners
        self.aux_is_list = isinstance(auxiliary_head, (list, tuple))
        if auxiliary_head is None:
            self.auxiliary_head = None
        elif self.aux_is_list:
            self.auxiliary_head = torch.nn.ModuleList(MODELS.build(c) for c in auxiliary_head)
        else:
            self.auxiliary_head = MODELS.build(auxiliary_head)
        self.train_cfg = train_cfg
        self.test_cfg = self._check_test_cfg(dict(test_cfg or dict(mode='whole')))

    @staticmethod
    def _check_test_cfg(cfg: dict) -> dict:
        mode = cfg.setdefault('mode', 'whole')
        if mode not in ('whole', 'slide'):
            raise ValueError(f"EncoderDecoder: test_cfg.mode must be 'whole' or 'slide', "
                             f"got {mode!r}")
        if mode == 'slide':
            for key in ('crop_size', 'stride'):
                value = cfg.get(key)
                if value is None or len(value) != 2 or min(value) < 1:
                    raise ValueError(f'EncoderDecoder: slide inference needs test_cfg.{key} '
                                     f'= (h, w) with positive ints, got {value!r}')
            if any(s > c for s, c in zip(cfg['stride'], cfg['crop_size'])):
                raise ValueError(f"EncoderDecoder: test_cfg.stride {tuple(cfg['stride'])} "
                                 f"exceeds crop_size {tuple(cfg['crop_size'])}: windows "
                                 f"would leave pixels uncovered")
        return cfg

    # ------------------------------------------------------------------ network
    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of features."""
        feats = self.backbone(inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        return feats

    def encode_decode(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H, W) logits resized to the input size."""
        return self.decode_head.predict(self.extract_feat(inputs), inputs.shape[-2:])

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.decode_head(self.extract_feat(inputs))
        raise ValueError(f"EncoderDecoder: mode must be 'loss', 'predict' or 'tensor', "
                         f"got {mode!r}")

    # ------------------------------------------------------------------ training
    def loss(self, inputs: torch.Tensor, data_samples: List[SegDataSample]) -> Dict[str, torch.Tensor]:
        """(B, 3, H, W) + samples with ``gt_sem_seg`` -> dict of prefixed losses."""
        if not data_samples:
            raise ValueError('EncoderDecoder.loss: data_samples with gt_sem_seg are required')
        feats = self.extract_feat(inputs)
        losses = {f'decode.{k}': v for k, v in self.decode_head.loss(feats, data_samples).items()}
        if self.auxiliary_head is not None:
            heads = (list(enumerate(self.auxiliary_head)) if self.aux_is_list
                     else [(None, self.auxiliary_head)])
            for idx, head in heads:
                prefix = 'aux' if idx is None else f'aux_{idx}'
                losses.update({f'{prefix}.{k}': v
                               for k, v in head.loss(feats, data_samples).items()})
        return losses

    # ------------------------------------------------------------------ inference
    def inference(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H, W) logits on the padded input grid."""
        if self.test_cfg['mode'] == 'slide':
            return self.slide_inference(inputs)
        return self.encode_decode(inputs)

    def slide_inference(self, inputs: torch.Tensor) -> torch.Tensor:
        """Average the logits of overlapping (crop_h, crop_w) windows.

        Windows start every ``stride`` pixels; the last row / column of windows is moved
        back to end at the image border, and windows never exceed the image (a smaller
        image is one window). (B, 3, H, W) -> (B, C, H, W).
        """
        crop_h, crop_w = self.test_cfg['crop_size']
        stride_h, stride_w = self.test_cfg['stride']
        batch = self.test_cfg.get('batch_windows')
        B, _, H, W = inputs.shape
        windows = [(y1, x1) for y1 in _window_starts(H, crop_h, stride_h)
                   for x1 in _window_starts(W, crop_w, stride_w)]
        win_h, win_w = min(crop_h, H), min(crop_w, W)
        crops = torch.cat([inputs[:, :, y:y + win_h, x:x + win_w] for y, x in windows])
        step = crops.shape[0] if not batch else int(batch)
        logits = torch.cat([self.encode_decode(crops[i:i + step])
                            for i in range(0, crops.shape[0], step)])
        logits = logits.view(len(windows), B, -1, win_h, win_w)

        total = inputs.new_zeros((B, logits.shape[2], H, W))
        count = inputs.new_zeros((1, 1, H, W))
        for k, (y, x) in enumerate(windows):
            total[:, :, y:y + win_h, x:x + win_w] += logits[k]
            count[:, :, y:y + win_h, x:x + win_w] += 1
        return total / count

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[SegDataSample]] = None) -> List[SegDataSample]:
        """(B, 3, H, W) -> B samples with ``seg_logits`` / ``pred_sem_seg`` in original
        image pixels (see the module docstring)."""
        logits = self.inference(inputs)
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(inputs.shape[0])]
        return self.postprocess_result(logits, data_samples)

    def postprocess_result(self, logits: torch.Tensor,
                           data_samples: List[SegDataSample]) -> List[SegDataSample]:
        """Undo padding, flip and resizing per image.

        Args:
            logits: (B, C, H_pad, W_pad) on the network input grid.
            data_samples: B samples; metainfo ``img_shape`` (h, w) is the un-padded size
                (default: the full grid), ``ori_shape`` the original size (default:
                ``img_shape``), ``flip`` / ``flip_direction`` ('horizontal' by default,
                'vertical', 'diagonal') a test-time flip to undo.
        """
        if len(data_samples) != logits.shape[0]:
            raise ValueError(f'EncoderDecoder.predict: {len(data_samples)} data samples for a '
                             f'batch of {logits.shape[0]} images')
        for i, sample in enumerate(data_samples):
            meta = sample.metainfo
            h, w = meta.get('img_shape', logits.shape[-2:])[:2]
            logit = logits[i:i + 1, :, :h, :w]
            if meta.get('flip', False):
                direction = meta.get('flip_direction') or 'horizontal'
                dims = {'horizontal': [3], 'vertical': [2], 'diagonal': [2, 3]}.get(direction)
                if dims is None:
                    raise ValueError(f'EncoderDecoder.predict: unknown flip_direction '
                                     f'{direction!r} in {meta.get("img_path", "a sample")}')
                logit = logit.flip(dims)
            ori_shape = meta.get('ori_shape', (h, w))[:2]
            logit = resize(logit, ori_shape, 'bilinear', self.align_corners)[0]
            sample.seg_logits = PixelData(data=logit)
            sample.pred_sem_seg = PixelData(data=logit.argmax(0, keepdim=True))
        return data_samples


def _window_starts(size: int, crop: int, stride: int) -> List[int]:
    """Start offsets of the windows along one axis (the last one ends at ``size``)."""
    if size <= crop:
        return [0]
    n = (size - crop + stride - 1) // stride + 1
    return [min(i * stride, size - crop) for i in range(n)]

"""Data preprocessors: move a collated batch to the device, normalise, pad and stack.

The dataloader yields ``{'inputs': list of (3, H, W) uint8 tensors, 'data_samples': list}``.
The preprocessor returns ``{'inputs': (B, 3, H_pad, W_pad) float, 'data_samples': list}``
and records ``pad_shape`` / ``batch_input_shape`` in every sample's metainfo.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import ImgDataPreprocessor
from mmengine.structures import PixelData

from densebox.registry import MODELS


@MODELS.register_module()
class DetDataPreprocessor(ImgDataPreprocessor):
    """Normalise RGB images and stack them into a padded batch for a detector.

    Args:
        mean, std: per-channel RGB statistics in 0-255 units.
        pad_size_divisor: pad height and width up to a multiple of this.
        pad_value: value used for padding the (normalised) image.
        channels_last: return the batch in ``torch.channels_last`` memory format.
    """

    def __init__(self, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 pad_size_divisor: int = 1, pad_value: float = 0, channels_last: bool = False,
                 non_blocking: bool = True):
        super().__init__(mean=mean, std=std, pad_size_divisor=pad_size_divisor,
                         pad_value=pad_value, bgr_to_rgb=False, rgb_to_bgr=False,
                         non_blocking=non_blocking)
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs, data_samples = data['inputs'], data['data_samples']
        if data_samples is not None:
            batch_input_shape = tuple(inputs.shape[-2:])
            for sample in data_samples:
                sample.set_metainfo({'batch_input_shape': batch_input_shape,
                                     'pad_shape': batch_input_shape})
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return {'inputs': inputs, 'data_samples': data_samples}


@MODELS.register_module()
class SegDataPreprocessor(DetDataPreprocessor):
    """Like :class:`DetDataPreprocessor`, and, in training, pads every ``gt_sem_seg`` to the
    batch shape.

    Padded label pixels get ``seg_pad_value`` (255 = ignore), so padding never counts in the
    loss.  ``size`` pads every image to a fixed (h, w) at least, as a crop size would.
    """

    def __init__(self, *args, seg_pad_value: int = 255, size: Optional[Sequence[int]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.seg_pad_value = seg_pad_value
        self.size = tuple(size) if size is not None else None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs, samples = data['inputs'], data['data_samples']
        if self.size is not None:  # pad the normalised batch, so padding equals pad_value
            inputs = self._pad_to(inputs, self.size, self.pad_value)
        h, w = inputs.shape[-2:]
        if samples is not None:
            for sample in samples:
                sample.set_metainfo({'batch_input_shape': (h, w), 'pad_shape': (h, w)})
                # Test-time ground truth stays at the original resolution for the metric.
                if training and 'gt_sem_seg' in sample:
                    seg = self._pad_to(sample.gt_sem_seg.data, (h, w), self.seg_pad_value)
                    sample.gt_sem_seg = PixelData(data=seg, metainfo=sample.gt_sem_seg.metainfo)
        return {'inputs': inputs, 'data_samples': samples}

    @staticmethod
    def _pad_to(tensor: torch.Tensor, size: Sequence[int], value: float) -> torch.Tensor:
        """Pad (..., H, W) at the bottom/right to at least ``size`` = (h, w)."""
        pad_h = max(size[0] - tensor.shape[-2], 0)
        pad_w = max(size[1] - tensor.shape[-1], 0)
        if pad_h == 0 and pad_w == 0:
            return tensor
        return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)

"""Base class of the segmentation decode heads: input selection, classifier, loss."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from densebox.registry import MODELS
from densebox.models.losses import cross_entropy  # noqa: F401  (registers CrossEntropyLoss)
from densebox.models.utils import resize


class BaseDecodeHead(BaseModule):
    """A head maps backbone (or neck) features to per-class logits.

    Subclasses implement :meth:`forward_features` (selected inputs -> (B, channels, h, w)
    features); this class adds dropout and the ``conv_seg`` classifier, the loss and the
    inference resize.

    Args:
        in_channels: channels of the selected input, or a sequence when ``in_index`` is
            a sequence.
        channels: channels of the features fed to the classifier.
        num_classes: number of classes C.
        in_index: which feature(s) of the input tuple to use: an int selects one tensor,
            a sequence selects a list of tensors.
        dropout_ratio: dropout probability before the classifier (0 disables it).
        cls_kernel_size: kernel size of ``conv_seg`` (1, or 3 for FFNet's B seg head).
        norm_cfg, act_cfg: configs of the ConvBNAct units the subclasses build.
        loss_decode: loss config, or a list of them (their outputs are summed per name).
        ignore_index: label of ignored pixels (255).
        align_corners: ``align_corners`` of the bilinear resize of logits to label /
            image size.
    """

    def __init__(self, in_channels: Union[int, Sequence[int]], channels: int, num_classes: int,
                 in_index: Union[int, Sequence[int]] = -1, dropout_ratio: float = 0.1,
                 cls_kernel_size: int = 1, norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 loss_decode: Union[dict, Sequence[dict]] = dict(type='CrossEntropyLoss',
                                                                 loss_weight=1.0),
                 ignore_index: int = 255, align_corners: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        multi = isinstance(in_index, (list, tuple))
        if multi != isinstance(in_channels, (list, tuple)) or (
                multi and len(in_index) != len(in_channels)):
            raise ValueError(f'{type(self).__name__}: in_index {in_index} and in_channels '
                             f'{in_channels} must both be ints or sequences of equal length')
        if num_classes < 1:
            raise ValueError(f'{type(self).__name__}: num_classes must be >= 1, '
                             f'got {num_classes}')
        self.in_channels = list(in_channels) if multi else in_channels
        self.in_index = list(in_index) if multi else in_index
        self.channels = channels
        self.num_classes = num_classes
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.ignore_index = ignore_index
        self.align_corners = align_corners

        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.conv_seg = nn.Conv2d(channels, num_classes, cls_kernel_size,
                                  padding=cls_kernel_size // 2)
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

        cfgs = loss_decode if isinstance(loss_decode, (list, tuple)) else [loss_decode]
        self.loss_decode = nn.ModuleList(MODELS.build(dict(cfg)) for cfg in cfgs)

    # ------------------------------------------------------------------ forward
    def _select(self, feats: Sequence[torch.Tensor]) -> Union[torch.Tensor, List[torch.Tensor]]:
        if isinstance(self.in_index, list):
            return [feats[i] for i in self.in_index]
        return feats[self.in_index]

    def forward_features(self, inputs):
        """Selected input(s) -> (B, channels, h, w)."""
        raise NotImplementedError

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        """(B, channels, h, w) -> (B, num_classes, h, w)."""
        if self.dropout is not None:
            x = self.dropout(x)
        return self.conv_seg(x)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Tuple of backbone features -> (B, num_classes, h, w) logits at head resolution."""
        return self.cls_seg(self.forward_features(self._select(feats)))

    # ------------------------------------------------------------------ train / test
    def loss(self, feats: Sequence[torch.Tensor], data_samples: Sequence) -> dict:
        """Losses of the logits against each sample's ``gt_sem_seg`` (1, H, W)."""
        return self.loss_by_feat(self(feats), data_samples)

    def loss_by_feat(self, seg_logits: torch.Tensor, data_samples: Sequence) -> dict:
        """
        Args:
            seg_logits: (B, C, h, w) logits; resized (bilinear) to the label size.
            data_samples: B samples with ``gt_sem_seg.data`` (1, H, W), all the same size
                (the data preprocessor pads them to the batch shape).
        Returns:
            ``{loss_name: scalar, ..., 'acc_seg': percent of correct non-ignored pixels}``.
        """
        labels = [s.gt_sem_seg.data for s in data_samples]
        shapes = {tuple(t.shape) for t in labels}
        if len(shapes) != 1:
            raise ValueError(f'{type(self).__name__}.loss: gt_sem_seg shapes differ within the '
                             f'batch: {sorted(shapes)}; pad them (SegDataPreprocessor does)')
        label = torch.stack(labels).squeeze(1).long().to(seg_logits.device)  # (B, H, W)
        seg_logits = resize(seg_logits, label.shape[-2:], 'bilinear', self.align_corners)
        losses = {}
        for loss_fn in self.loss_decode:
            value = loss_fn(seg_logits, label, ignore_index=self.ignore_index)
            name = loss_fn.loss_name
            losses[name] = losses[name] + value if name in losses else value
        losses['acc_seg'] = pixel_accuracy(seg_logits.detach(), label, self.ignore_index)
        return losses

    def predict(self, feats: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """Logits resized (bilinear) to ``size`` = (H, W): (B, num_classes, H, W)."""
        return resize(self(feats), size, 'bilinear', self.align_corners)


def pixel_accuracy(seg_logits: torch.Tensor, label: torch.Tensor,
                   ignore_index: int = 255) -> torch.Tensor:
    """Percent of non-ignored pixels whose argmax class equals the label (0 if none).

    seg_logits (B, C, H, W), label (B, H, W) -> scalar tensor.
    """
    valid = label != ignore_index
    correct = (seg_logits.argmax(1) == label) & valid
    return correct.sum().float() * 100.0 / valid.sum().clamp(min=1).float()

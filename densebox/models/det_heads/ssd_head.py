"""SSD detection head: per-level class and box convolutions, SSD loss and batched decoding.

Class index 0 of the logits is background (the Caffe / torchvision layout); the labels
outside the head are 0-based object classes.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from densebox.registry import MODELS, TASK_UTILS


def _predictor(in_ch: int, out_ch: int, depthwise: bool) -> nn.Module:
    """3x3 conv, or SSDLite's depthwise 3x3 + BN + ReLU6 + pointwise 1x1."""
    if not depthwise:
        return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch), nn.ReLU6(inplace=True),
        nn.Conv2d(in_ch, out_ch, kernel_size=1))


@MODELS.register_module()
class SSDHead(BaseModule):
    """Head of SSD and SSDLite.

    Args:
        num_classes: object classes, background excluded.
        in_channels: channels of each source feature map.
        anchor_generator: config of :class:`SSDAnchorGenerator`.
        bbox_coder: config of :class:`DeltaXYWHBoxCoder` (variances 0.1 / 0.2).
        use_depthwise: SSDLite's depthwise-separable predictors.
        train_cfg: ``matcher`` (IoU thresholds), ``neg_pos_ratio`` (3), ``smooth_l1_beta`` (1.0),
            ``loc_weight`` (alpha = 1).
        test_cfg: ``score_thr`` (0.01), ``nms_pre`` (candidates per class, 400),
            ``nms_iou_thr`` (0.45), ``max_per_img`` (200).
    """

    def __init__(self, num_classes: int, in_channels: Sequence[int], anchor_generator: dict,
                 bbox_coder: dict = dict(type='DeltaXYWHBoxCoder'), use_depthwise: bool = False,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.anchor_generator = TASK_UTILS.build(anchor_generator)
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        num_anchors = self.anchor_generator.num_base_anchors
        if len(num_anchors) != len(in_channels):
            raise ValueError(f'SSDHead: {len(in_channels)} input levels but the anchor generator '
                             f'has {len(num_anchors)}')
        self.cls_convs = nn.ModuleList(
            _predictor(c, a * (num_classes + 1), use_depthwise) for c, a in zip(in_channels, num_anchors))
        self.reg_convs = nn.ModuleList(
            _predictor(c, a * 4, use_depthwise) for c, a in zip(in_channels, num_anchors))
        train_cfg = dict(train_cfg or {})
        self.matcher = TASK_UTILS.build(train_cfg.pop('matcher', dict(type='SSDMatcher')))
        self.neg_pos_ratio = train_cfg.pop('neg_pos_ratio', 3)
        self.smooth_l1_beta = train_cfg.pop('smooth_l1_beta', 1.0)
        self.loc_weight = train_cfg.pop('loc_weight', 1.0)
        if train_cfg:
            raise ValueError(f'SSDHead: unknown train_cfg keys {sorted(train_cfg)}')
        self.test_cfg = dict(score_thr=0.01, nms_pre=400, nms_iou_thr=0.45, max_per_img=200)
        unknown = set(test_cfg or {}) - set(self.test_cfg)
        if unknown:
            raise ValueError(f'SSDHead: unknown test_cfg keys {sorted(unknown)}')
        self.test_cfg.update(test_cfg or {})

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        """feats: tuple of (B, C_k, H_k, W_k) ->
        cls_logits (B, A, num_classes + 1) and box_deltas (B, A, 4), A = sum_k H_k W_k A_k."""
        batch = feats[0].shape[0]
        cls = [conv(f).permute(0, 2, 3, 1).reshape(batch, -1, self.num_classes + 1)
               for conv, f in zip(self.cls_convs, feats)]
        reg = [conv(f).permute(0, 2, 3, 1).reshape(batch, -1, 4)
               for conv, f in zip(self.reg_convs, feats)]
        return torch.cat(cls, 1), torch.cat(reg, 1)

    def anchors(self, feats: Sequence[Tensor]) -> Tensor:
        """(A, 4) xyxy default boxes for these feature maps."""
        return self.anchor_generator.grid_anchors([f.shape[-2:] for f in feats], feats[0].device)

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], data_samples: Sequence) -> dict:
        cls_logits, box_deltas = self(feats)
        anchors = self.anchors(feats)
        gt_boxes, gt_labels, gt_valid = _pad_ground_truth(data_samples, anchors.device)
        matched, _ = self.matcher(anchors, gt_boxes, gt_valid)                 # (B, A)
        return self.loss_by_targets(cls_logits, box_deltas, anchors, matched, gt_boxes, gt_labels)

    def loss_by_targets(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor,
                        matched: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> dict:
        """SSD loss: (L_conf + alpha * L_loc) / N with 3:1 hard negative mining.

        Args:
            cls_logits: (B, A, C + 1); box_deltas: (B, A, 4); anchors: (A, 4);
            matched: (B, A) ground-truth index, -1 negative, -2 ignored;
            gt_boxes: (B, G, 4); gt_labels: (B, G) 0-based.
        """
        if gt_labels.shape[1] == 0:
            # no image of the batch has an object (G = 0): one dummy box that no prior is
            # matched to keeps the gathers below in range; every prior is background
            gt_boxes = gt_boxes.new_zeros(gt_boxes.shape[0], 1, 4)
            gt_labels = gt_labels.new_zeros(gt_labels.shape[0], 1)
        positive = matched >= 0
        negative = matched == -1
        index = matched.clamp(min=0)
        target_labels = torch.gather(gt_labels, 1, index) + 1                  # 0 = background
        target_labels = torch.where(positive, target_labels, torch.zeros_like(target_labels))
        num_pos = positive.sum(1)                                              # (B,)
        normaliser = num_pos.sum().clamp(min=1).float()

        ce = F.cross_entropy(cls_logits.flatten(0, 1).float(), target_labels.flatten(),
                             reduction='none').view_as(target_labels)
        keep_neg = hard_negative_mask(ce, negative, num_pos * self.neg_pos_ratio)
        loss_cls = (ce * (positive | keep_neg)).sum() / normaliser

        target_boxes = torch.gather(gt_boxes, 1, index[..., None].expand(-1, -1, 4))
        target_deltas = self.bbox_coder.encode(anchors[None].expand_as(target_boxes), target_boxes)
        loss_box = F.smooth_l1_loss(box_deltas.float(), target_deltas, beta=self.smooth_l1_beta,
                                    reduction='none').sum(-1)
        loss_box = (loss_box * positive).sum() / normaliser * self.loc_weight
        return dict(loss_cls=loss_cls, loss_bbox=loss_box)

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples: Sequence,
                rescale: bool = True) -> List[InstanceData]:
        """Detections per image, boxes in original-image pixels when ``rescale``."""
        cls_logits, box_deltas = self(feats)
        metas = [s.metainfo for s in data_samples]
        return self.predict_by_outputs(cls_logits, box_deltas, self.anchors(feats), metas, rescale)

    def predict_by_outputs(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor,
                           metas: Sequence[dict], rescale: bool = True) -> List[InstanceData]:
        """Decode and suppress the whole batch at once on its device.

        Per image and class the ``nms_pre`` best-scoring priors above ``score_thr`` are kept,
        NMS runs inside each (image, class) row of that table, and the ``max_per_img`` best
        survivors of each image are returned. All of it works on fixed-shape tensors (see
        :meth:`batched_detections`); the host waits only once, for the per-image counts.
        """
        factors = scale_factor_tensor(metas, cls_logits.device) if rescale else None
        out_boxes, out_scores, out_labels, counts = self.batched_detections(
            cls_logits, box_deltas, anchors, metas, rescale, factors)
        # Scores are sorted, so each image's detections are a prefix of its row: one read of
        # the counts (the only host sync) and then plain slices.
        return [InstanceData(bboxes=out_boxes[i, :n], scores=out_scores[i, :n],
                             labels=out_labels[i, :n]) for i, n in enumerate(counts.tolist())]

    def batched_detections(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor,
                           metas: Sequence[dict], rescale: bool = True,
                           scale_factors: Optional[Tensor] = None
                           ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Detections of a batch as padded tensors, with no data-dependent shape anywhere.

        Args:
            cls_logits: (B, A, C + 1) class logits, background first.
            box_deltas: (B, A, 4) encoded box regressions.
            anchors: (A, 4) xyxy priors in input pixels.
            metas: per-image meta dicts (``scale_factor``; ``batch_input_shape`` or
                ``img_shape`` for clipping).
            rescale: divide boxes by each image's ``scale_factor``.
            scale_factors: (B, 4) ``(w, h, w, h)`` factors on the logits' device
                (:func:`scale_factor_tensor`); None: made from ``metas`` here. Passing them
                keeps this method free of host-to-device copies, so on CUDA it never makes
                the host wait.

        Returns:
            boxes (B, M, 4), scores (B, M) sorted in decreasing order, labels (B, M) int64,
            counts (B,) int64: image i's detections are the first ``counts[i]`` entries of
            its rows (M = ``max_per_img``); padding entries have score -1.
        """
        from densebox.ops import segmented_nms
        cfg = self.test_cfg
        batch, num_anchors, _ = cls_logits.shape
        num_classes = self.num_classes
        input_hw = metas[0].get('batch_input_shape', metas[0]['img_shape'])
        boxes = self.bbox_coder.decode(anchors[None], box_deltas, max_shape=input_hw)   # (B, A, 4)
        scores = cls_logits.float().softmax(-1)[..., 1:].transpose(1, 2)              # (B, C, A)

        k = min(cfg['nms_pre'], num_anchors)
        top_scores, top_idx = scores.topk(k, dim=2)                      # (B, C, k), sorted
        cand_boxes = torch.gather(boxes[:, None].expand(-1, num_classes, -1, -1), 2,
                                  top_idx[..., None].expand(-1, -1, -1, 4))            # (B, C, k, 4)
        valid = top_scores > cfg['score_thr']
        keep = segmented_nms(cand_boxes.flatten(0, 1), valid.flatten(0, 1),
                             cfg['nms_iou_thr']).view_as(valid)                        # (B, C, k)

        # survivors' scores in a (B, C*k) table (-1 elsewhere); each image's best M of it
        table = torch.where(keep, top_scores, torch.full_like(top_scores, -1.0)).flatten(1)
        num_out = min(cfg['max_per_img'], table.shape[1])
        out_scores, out_idx = table.topk(num_out, dim=1)                                # (B, M)
        out_boxes = torch.gather(cand_boxes.flatten(1, 2), 1, out_idx[..., None].expand(-1, -1, 4))
        out_labels = out_idx // k
        if rescale:
            if scale_factors is None:
                scale_factors = scale_factor_tensor(metas, boxes.device)
            out_boxes = out_boxes / scale_factors.to(out_boxes.dtype)[:, None, :]
        counts = (out_scores >= 0).sum(1)
        return out_boxes, out_scores, out_labels, counts


def scale_factor_tensor(metas: Sequence[dict], device) -> Tensor:
    """(B, 4) float32 ``(w_scale, h_scale, w_scale, h_scale)`` of each image's
    ``scale_factor`` on ``device``; to a GPU through pinned memory without blocking."""
    factors = torch.tensor([[float(m['scale_factor'][0]), float(m['scale_factor'][1])] * 2
                            for m in metas], dtype=torch.float32)
    device = torch.device(device)
    if device.type == 'cuda':
        return factors.pin_memory().to(device, non_blocking=True)
    return factors.to(device)


def hard_negative_mask(loss: Tensor, negative: Tensor, num_keep: Tensor) -> Tensor:
    """Select, per image, the ``num_keep`` negatives with the highest loss.

    Args:
        loss: (B, A) per-prior classification loss.
        negative: (B, A) bool, priors that may be chosen.
        num_keep: (B,) how many to keep in each image.
    Returns:
        (B, A) bool mask of the chosen negatives.
    """
    neg_loss = loss.detach().masked_fill(~negative, -1.0)
    order = neg_loss.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return negative & (rank < num_keep[:, None])


def _pad_ground_truth(data_samples: Sequence, device) -> Tuple[Tensor, Tensor, Tensor]:
    """Stack ragged ground truth into (B, G, 4) boxes, (B, G) labels and a (B, G) valid mask."""
    boxes = [s.gt_instances.bboxes.to(device).float() for s in data_samples]
    labels = [s.gt_instances.labels.to(device).long() for s in data_samples]
    num_gt = max([len(b) for b in boxes] + [0])
    batch = len(boxes)
    gt_boxes = torch.zeros(batch, num_gt, 4, device=device)
    gt_labels = torch.zeros(batch, num_gt, dtype=torch.long, device=device)
    gt_valid = torch.zeros(batch, num_gt, dtype=torch.bool, device=device)
    for i, (b, l) in enumerate(zip(boxes, labels)):
        gt_boxes[i, :len(b)] = b
        gt_labels[i, :len(l)] = l
        gt_valid[i, :len(b)] = True
    return gt_boxes, gt_labels, gt_valid

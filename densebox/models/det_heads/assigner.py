"""SSD matching of default boxes to ground truth, for a whole padded batch at once."""
from typing import Tuple

import torch
from torch import Tensor

from densebox.registry import TASK_UTILS
from densebox.structures import bbox_iou


@TASK_UTILS.register_module()
class SSDMatcher:
    """Each ground-truth box takes its best-IoU prior; then every other prior whose best IoU
    with any ground truth is >= ``pos_iou_thr`` is matched to that ground truth.

    Priors whose best IoU is below ``neg_iou_thr`` are negatives; priors in between (when
    ``neg_iou_thr < pos_iou_thr``) are ignored. SSD uses 0.5 for both.
    """

    def __init__(self, pos_iou_thr: float = 0.5, neg_iou_thr: float = 0.5):
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr

    def __call__(self, anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor) -> Tuple[Tensor, Tensor]:
        """Match a batch.

        Args:
            anchors: (A, 4) xyxy.
            gt_boxes: (B, G, 4) xyxy, padded to the largest ground-truth count G.
            gt_valid: (B, G) bool, False on padding.
        Returns:
            matched_gt: (B, A) int64 index of the matched ground truth, -1 for negatives and
                -2 for ignored priors.
            max_iou: (B, A) best IoU of each prior (1+ for forced best-prior matches).
        """
        batch, num_gt = gt_valid.shape
        num_anchors = anchors.shape[0]
        if num_gt == 0:
            neg = torch.full((batch, num_anchors), -1, dtype=torch.long, device=anchors.device)
            return neg, anchors.new_zeros(batch, num_anchors)
        iou = bbox_iou(gt_boxes, anchors[None].expand(batch, -1, -1))            # (B, G, A)
        iou = iou.masked_fill(~gt_valid[..., None], -1.0)
        max_iou, matched = iou.max(dim=1)                                        # (B, A)

        # Force every valid ground truth onto its best prior, so that no object goes
        # unmatched. (When two objects share a best prior, only one of them can keep it.)
        # Padding entries write into a spare column A that is dropped: no boolean-mask
        # indexing, so on a GPU nothing waits for the host.
        best_prior = iou.argmax(dim=2)                                           # (B, G)
        target = torch.where(gt_valid, best_prior, torch.full_like(best_prior, num_anchors))
        gt_index = torch.arange(num_gt, device=anchors.device).expand(batch, -1)
        spare = matched.new_zeros(batch, 1)
        matched = torch.cat([matched, spare], 1).scatter_(1, target, gt_index)[:, :num_anchors]
        max_iou = torch.cat([max_iou, max_iou.new_zeros(batch, 1)], 1).scatter_(
            1, target, 2.0)[:, :num_anchors]

        negative_or_ignored = torch.where(max_iou < self.neg_iou_thr, -1, -2)
        result = torch.where(max_iou >= self.pos_iou_thr, matched, negative_or_ignored)
        return result, max_iou

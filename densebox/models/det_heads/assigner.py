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
        best_prior = iou.argmax(dim=2)                                           # (B, G)
        gt_index = torch.arange(num_gt, device=anchors.device).expand(batch, -1)
        batch_index = torch.arange(batch, device=anchors.device)[:, None].expand(-1, num_gt)
        valid = gt_valid
        matched[batch_index[valid], best_prior[valid]] = gt_index[valid]
        max_iou[batch_index[valid], best_prior[valid]] = 2.0

        result = torch.full_like(matched, -2)
        result[max_iou < self.neg_iou_thr] = -1
        positive = max_iou >= self.pos_iou_thr
        result[positive] = matched[positive]
        return result, max_iou

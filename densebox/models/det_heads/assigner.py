"""SSD matching of default boxes to ground truth, for a whole padded batch at once."""
from typing import Tuple

import torch
from torch import Tensor

from densebox.registry import TASK_UTILS
from densebox.structures import bbox_iou

from .bipartite import greedy_bipartite_match


@TASK_UTILS.register_module()
class SSDMatcher:
    """Caffe SSD's matching: first every ground-truth box gets a prior of its own by greedy
    bipartite matching on IoU (:func:`~densebox.models.det_heads.bipartite.greedy_bipartite_match`:
    the best-IoU pair first; a box whose best prior went to a better-overlapping box takes
    its best remaining prior); then every other prior whose best IoU with any ground truth is
    >= ``pos_iou_thr`` is matched to that ground truth (the first one on ties).

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
            max_iou: (B, A) best IoU of each prior (2 for the bipartite matches). A ground
                truth that overlaps no prior (IoU <= 1e-6, e.g. zero area) gets none.
        """
        batch, num_gt = gt_valid.shape
        num_anchors = anchors.shape[0]
        if num_gt == 0:
            neg = torch.full((batch, num_anchors), -1, dtype=torch.long, device=anchors.device)
            return neg, anchors.new_zeros(batch, num_anchors)
        iou = bbox_iou(gt_boxes, anchors[None].expand(batch, -1, -1))            # (B, G, A)
        iou = iou.masked_fill(~gt_valid[..., None], -1.0)
        max_iou, matched = iou.max(dim=1)                                        # (B, A)

        # Caffe's bipartite step: every ground truth gets a prior of its own, even when two
        # share the same best prior (the second takes its best remaining one).
        best_prior = greedy_bipartite_match(iou, gt_valid)                      # (B, G)
        gt_index = torch.arange(num_gt, device=anchors.device).expand(batch, -1)
        batch_index = torch.arange(batch, device=anchors.device)[:, None].expand(-1, num_gt)
        forced = best_prior >= 0
        matched[batch_index[forced], best_prior[forced]] = gt_index[forced]
        max_iou[batch_index[forced], best_prior[forced]] = 2.0

        result = torch.full_like(matched, -2)
        result[max_iou < self.neg_iou_thr] = -1
        positive = max_iou >= self.pos_iou_thr
        result[positive] = matched[positive]
        return result, max_iou

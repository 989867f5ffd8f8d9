"""SSD matching of default boxes to ground truth, for a whole padded batch at once."""
from typing import Tuple

import torch
from torch import Tensor

from densebox.registry import TASK_UTILS
from densebox.ops import box_iou

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

    ``bipartite=False`` matches as torchvision's and mmdetection's SSD do instead: each
    ground truth is forced onto its best prior, and of two boxes sharing one the later keeps
    it (the other may go unmatched).
    """

    def __init__(self, pos_iou_thr: float = 0.5, neg_iou_thr: float = 0.5,
                 bipartite: bool = True):
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.bipartite = bipartite

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
        iou = box_iou(gt_boxes, anchors[None].expand(batch, -1, -1), eps=1e-9)  # (B, G, A)
        iou = iou.masked_fill(~gt_valid[..., None], -1.0)
        max_iou, matched = iou.max(dim=1)                                        # (B, A)

        if self.bipartite:
            # Caffe's bipartite step: every ground truth gets a prior of its own, even when
            # two share the same best prior (the second takes its best remaining one).
            best_prior = greedy_bipartite_match(iou, gt_valid)                  # (B, G)
        else:
            # torchvision's / mmdetection's forcing: each ground truth takes its best prior;
            # of two sharing one, the later keeps it.
            best_prior = torch.where(gt_valid, iou.argmax(dim=2), -1)           # (B, G)
        # The prior each ground truth is forced onto, as a (B, A) map of the (last) forcing
        # ground truth, -1 where none. Padding writes into a spare column A that is dropped;
        # no boolean-mask indexing, so on a GPU nothing waits for the host here.
        target = torch.where(best_prior >= 0, best_prior, num_anchors)
        gt_index = torch.arange(num_gt, device=anchors.device).expand(batch, -1)
        forced = torch.full((batch, num_anchors + 1), -1, dtype=torch.long, device=anchors.device)
        forced = forced.scatter_reduce(1, target, gt_index, reduce='amax')[:, :num_anchors]
        matched = torch.where(forced >= 0, forced, matched)
        max_iou = torch.where(forced >= 0, 2.0, max_iou)

        negative_or_ignored = torch.where(max_iou < self.neg_iou_thr, -1, -2)
        result = torch.where(max_iou >= self.pos_iou_thr, matched, negative_or_ignored)
        return result, max_iou

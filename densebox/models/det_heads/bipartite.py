"""Caffe SSD's bipartite matching step, for a padded batch at once.

Caffe's ``MatchBBox`` (``match_type: PER_PREDICTION``) first gives every ground truth a
prior of its own: it repeatedly takes the (prior, ground truth) pair with the highest IoU
among the priors and ground truths not matched yet, matches them, and removes both; pairs
with IoU <= 1e-6 never match, and ties go to the lowest prior index, then the lowest
ground-truth index. Two objects whose best prior is the same therefore both get one: the
better-overlapping one that prior, the other its best remaining prior.

:func:`greedy_bipartite_match` computes the same assignment in a few batched rounds
instead of one step per ground truth. In a round every open ground truth picks its best free
prior and every free prior its best open ground truth; a pair that picked each other is
one the sequential loop also takes (neither has a better partner left, now or later), so
all such pairs are matched at once. The best remaining pair of an image always picked each
other, so every round matches at least one ground truth per image that still has
candidates; typically one or two rounds finish a batch.
"""
import torch
from torch import Tensor

__all__ = ['greedy_bipartite_match']


def greedy_bipartite_match(iou: Tensor, gt_valid: Tensor, min_iou: float = 1e-6) -> Tensor:
    """The prior each ground truth gets in Caffe's bipartite step.

    Args:
        iou: (B, G, A) IoU of each ground truth with each prior.
        gt_valid: (B, G) bool, False on padding.
        min_iou: pairs with IoU <= this never match (Caffe: 1e-6).

    Returns:
        (B, G) int64: the prior index of each ground truth, -1 for padding and for ground
        truths that overlap no free prior. Within an image no prior is used twice.
    """
    batch, num_gt, num_priors = iou.shape
    device = iou.device
    candidates = iou.masked_fill(~gt_valid[..., None] | (iou <= min_iou), -1.0)
    prior_of_gt = torch.full((batch, num_gt), -1, dtype=torch.long, device=device)
    free = torch.ones(batch, num_priors + 1, dtype=torch.bool, device=device)  # +1: a dump slot
    open_gt = candidates.amax(dim=2) > min_iou                                   # (B, G)
    gt_index = torch.arange(num_gt, device=device).expand(batch, -1)
    for _ in range(num_gt):  # at most one round per ground truth; usually one or two
        if not bool(open_gt.any()):
            break
        scores = candidates.masked_fill(~free[:, None, :num_priors] | ~open_gt[..., None], -1.0)
        best_value, best_prior = scores.max(dim=2)                             # (B, G)
        _, best_gt = scores.max(dim=1)                                         # (B, A)
        mutual = open_gt & (best_value > min_iou) & (best_gt.gather(1, best_prior) == gt_index)
        prior_of_gt = torch.where(mutual, best_prior, prior_of_gt)
        free.scatter_(1, torch.where(mutual, best_prior, num_priors), False)
        open_gt &= ~mutual & (best_value > min_iou)  # no free candidate left: stays unmatched
    return prior_of_gt

"""The SSD loss (``SSDHead.loss_by_targets``) against torchvision's ``SSD.compute_loss`` on the
same anchors, outputs and matches, and against a plain per-prior re-statement where the two
projects differ (priors in the matcher's ignore band, the loss options torchvision lacks).

torchvision matches default boxes its own way (no Caffe bipartite step), so the comparison
hands both losses the same ``matched`` indices: densebox's matcher decides, and the losses
must then agree. densebox's matcher against Caffe's MatchBBox is in tests/test_ssd.py."""
import math

import pytest
import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD

from densebox.models.det_heads import SSDHead, SSDMatcher
from densebox.ops import box_iou
from test_ssd import _caffe_match

NUM_CLASSES = 4  # object classes; the logits have one more, background first


def _head(**train_cfg):
    """A two-level SSD head on a 64 x 64 input: 8x8x4 + 4x4x6 = 352 default boxes."""
    return SSDHead(NUM_CLASSES, in_channels=(8, 8), anchor_generator=dict(
        type='SSDAnchorGenerator', input_size=64, strides=(8, 16), min_sizes=(12, 28),
        max_sizes=(28, 48), ratios=([2], [2, 3])), train_cfg=train_cfg or None)


def _anchors(head):
    return head.anchor_generator.grid_anchors([(8, 8), (4, 4)])


def _ground_truth(counts, seed):
    """Padded (B, G, 4) boxes in a 64 x 64 image, (B, G) 0-based labels, (B, G) valid."""
    g = torch.Generator().manual_seed(seed)
    batch, num_gt = len(counts), max(counts)
    xy = torch.rand(batch, num_gt, 2, generator=g) * 40
    wh = 8 + torch.rand(batch, num_gt, 2, generator=g) * 24
    boxes = torch.cat([xy, (xy + wh).clamp(max=64)], -1)
    labels = torch.randint(0, NUM_CLASSES, (batch, num_gt), generator=g)
    valid = torch.arange(num_gt)[None] < torch.tensor(counts)[:, None]
    return boxes * valid[..., None], labels * valid, valid


def _outputs(num_anchors, batch, seed):
    """Class logits spread enough that the mined negatives are well separated, and box
    deltas on both sides of the smooth-L1 knee."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, num_anchors, NUM_CLASSES + 1, generator=g) * 2
    deltas = torch.randn(batch, num_anchors, 4, generator=g) * 1.5
    return logits, deltas


def _torchvision_ssd(neg_pos_ratio):
    """torchvision's SSD with a stand-in backbone and head: compute_loss needs neither."""
    backbone = nn.Module()
    backbone.out_channels = [8]
    positive_fraction = 1.0 / (1.0 + neg_pos_ratio)  # torchvision's way of saying 3:1
    return SSD(backbone, DefaultBoxGenerator([[2]]), (64, 64), NUM_CLASSES + 1,
               head=nn.Identity(), positive_fraction=positive_fraction)


def _torchvision_loss(tv, logits, deltas, anchors, matched, gt_boxes, gt_labels, gt_valid):
    targets = [dict(boxes=b[v], labels=l[v] + 1)  # torchvision: 0 is background
               for b, l, v in zip(gt_boxes, gt_labels, gt_valid)]
    out = tv.compute_loss(targets, dict(bbox_regression=deltas, cls_logits=logits),
                          [anchors] * len(targets), list(matched))
    return out['classification'], out['bbox_regression']


@pytest.mark.parametrize('neg_pos_ratio,loc_weight', [(3, 1.0), (2, 1.0), (3, 2.5)])
def test_loss_equals_torchvision_compute_loss_on_the_same_matches(neg_pos_ratio, loc_weight):
    head = _head(neg_pos_ratio=neg_pos_ratio, loc_weight=loc_weight)
    anchors = _anchors(head)
    gt_boxes, gt_labels, gt_valid = _ground_truth([3, 1, 0, 5], seed=0)  # one image empty
    matched, _ = head.matcher(anchors, gt_boxes, gt_valid)
    logits, deltas = _outputs(len(anchors), 4, seed=1)

    positives = (matched >= 0).sum(1)
    negatives = (matched == -1).sum(1)
    assert positives[[0, 1, 3]].min() >= 1 and positives[2] == 0 and positives.sum() >= 10
    assert not (matched == -2).any()  # torchvision has no ignored priors: none here
    # torchvision's mining ranks the positives last; asking for more negatives than there
    # are would count positives twice. Both agree on the case SSD meets.
    assert (positives * neg_pos_ratio < negatives).all()

    ours = head.loss_by_targets(logits, deltas, anchors, matched, gt_boxes, gt_labels)
    cls, box = _torchvision_loss(_torchvision_ssd(neg_pos_ratio), logits, deltas, anchors,
                                 matched, gt_boxes, gt_labels, gt_valid)
    torch.testing.assert_close(ours['loss_cls'], cls, rtol=1e-5, atol=0)
    # torchvision has no localisation weight (alpha = 1)
    torch.testing.assert_close(ours['loss_bbox'], box * loc_weight, rtol=1e-5, atol=0)


def test_a_batch_without_any_ground_truth_is_all_background():
    """Images without objects (filter_empty_gt=False) can fill a batch: no positives, so
    nothing is mined and both losses are 0, as in torchvision."""
    head = _head()
    anchors = _anchors(head)
    gt_boxes, gt_labels = torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long)
    gt_valid = torch.zeros(2, 0, dtype=torch.bool)
    matched, _ = head.matcher(anchors, gt_boxes, gt_valid)
    logits, deltas = _outputs(len(anchors), 2, seed=2)
    ours = head.loss_by_targets(logits, deltas, anchors, matched, gt_boxes, gt_labels)
    cls, box = _torchvision_loss(_torchvision_ssd(3), logits, deltas, anchors, matched,
                                 gt_boxes, gt_labels, gt_valid)
    assert ours['loss_cls'].item() == cls.item() == 0
    assert ours['loss_bbox'].item() == box.item() == 0
    # the same through SSDHead.loss, from data samples without instances
    from mmengine.structures import InstanceData
    from densebox.structures import DetDataSample
    samples = [DetDataSample(gt_instances=InstanceData(bboxes=torch.zeros(0, 4),
                                                       labels=torch.zeros(0, dtype=torch.long)))
               for _ in range(2)]
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    losses = head.loss(feats, samples)
    assert losses['loss_cls'].item() == losses['loss_bbox'].item() == 0


# ------------------------------------------------------------- the ignore band, plainly
def _plain_match(iou, valid, pos_thr, neg_thr):
    """Caffe's MatchBBox at ``pos_thr`` (tests/test_ssd.py), then the band: an unmatched
    prior whose best IoU with a valid box is >= ``neg_thr`` is ignored (-2), else -1."""
    match = _caffe_match(iou, valid, pos_thr)
    for p in range(iou.shape[1]):
        if match[p] == -1:
            best = max(float(iou[g, p]) for g in range(iou.shape[0]) if valid[g])
            if best >= neg_thr:
                match[p] = -2
    return match


def _smooth_l1(d, beta):
    d = abs(d)
    return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


def _plain_loss(logits, deltas, anchors, matched, gt_boxes, gt_labels, neg_pos_ratio, beta,
                loc_weight, variances=(0.1, 0.1, 0.2, 0.2)):
    """The SSD loss prior by prior: cross-entropy on the positives and on the
    ``neg_pos_ratio * positives`` negatives (matched == -1) of highest loss in each image,
    smooth L1 on the positives' encoded boxes, both over the batch's number of positives."""
    cls_sum = loc_sum = 0.0
    num_pos = 0
    for b in range(logits.shape[0]):
        log_probs = torch.log_softmax(logits[b].double(), -1)
        positive = [p for p in range(len(anchors)) if matched[b, p] >= 0]
        negative = [p for p in range(len(anchors)) if matched[b, p] == -1]
        num_pos += len(positive)
        for p in positive:
            g = int(matched[b, p])
            cls_sum += -float(log_probs[p, int(gt_labels[b, g]) + 1])
            ax1, ay1, ax2, ay2 = anchors[p].tolist()
            gx1, gy1, gx2, gy2 = gt_boxes[b, g].tolist()
            aw, ah, gw, gh = ax2 - ax1, ay2 - ay1, gx2 - gx1, gy2 - gy1
            target = (((gx1 + gx2) / 2 - (ax1 + ax2) / 2) / aw / variances[0],
                      ((gy1 + gy2) / 2 - (ay1 + ay2) / 2) / ah / variances[1],
                      math.log(gw / aw) / variances[2], math.log(gh / ah) / variances[3])
            loc_sum += sum(_smooth_l1(float(deltas[b, p, k]) - target[k], beta)
                           for k in range(4))
        background = sorted((-float(log_probs[p, 0]) for p in negative), reverse=True)
        cls_sum += sum(background[:neg_pos_ratio * len(positive)])
    n = max(num_pos, 1)
    return cls_sum / n, loc_sum / n * loc_weight


def test_matcher_ignore_band_and_the_loss_skip_the_priors_between_thresholds():
    """With neg_iou_thr < pos_iou_thr, priors whose best IoU lies in between are neither
    positive nor negative: not matched, never mined, not in the normaliser."""
    head = _head(matcher=dict(type='SSDMatcher', pos_iou_thr=0.5, neg_iou_thr=0.3),
                 neg_pos_ratio=3, smooth_l1_beta=0.5, loc_weight=1.5)
    anchors = _anchors(head)
    gt_boxes, gt_labels, gt_valid = _ground_truth([4, 2, 6], seed=3)
    matched, _ = head.matcher(anchors, gt_boxes, gt_valid)
    iou = box_iou(gt_boxes, anchors[None].expand(3, -1, -1))
    for b in range(3):
        expected = _plain_match(iou[b], gt_valid[b], 0.5, 0.3)
        torch.testing.assert_close(matched[b], expected, rtol=0, atol=0)
    ignored = matched == -2
    assert ignored.sum(1).min() >= 3 and (matched >= 0).sum(1).min() >= 2
    # the same boxes with one threshold: every ignored prior becomes a negative
    single, _ = SSDMatcher(0.5, 0.5)(anchors, gt_boxes, gt_valid)
    assert (single[ignored] == -1).all() and torch.equal(single[~ignored], matched[~ignored])

    logits, deltas = _outputs(len(anchors), 3, seed=4)
    # make the ignored priors the most confidently wrong ones: mined, they would dominate
    logits[ignored] = torch.tensor([-8.0] + [8.0] * NUM_CLASSES)
    ours = head.loss_by_targets(logits, deltas, anchors, matched, gt_boxes, gt_labels)
    cls, box = _plain_loss(logits, deltas, anchors, matched, gt_boxes, gt_labels,
                           neg_pos_ratio=3, beta=0.5, loc_weight=1.5)
    assert ours['loss_cls'].item() == pytest.approx(cls, rel=1e-5)
    assert ours['loss_bbox'].item() == pytest.approx(box, rel=1e-5)
    as_negatives = head.loss_by_targets(logits, deltas, anchors, single, gt_boxes, gt_labels)
    assert as_negatives['loss_cls'] > 2 * ours['loss_cls']  # the band really matters here

"""SSD parts: default boxes, box coder, matcher, hard negative mining, model shapes."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from densebox.models.det_heads import (DeltaXYWHBoxCoder, SSDAnchorGenerator, SSDMatcher,
                                       hard_negative_mask)
from densebox.models.det_heads.bipartite import greedy_bipartite_match
from densebox.models.det_heads.ssd_head import scale_factor_tensor
import densebox.models  # noqa: F401  (registers the model parts)
from mmengine.registry import init_default_scope
from densebox.registry import MODELS
from densebox.ops import box_iou
from densebox.structures import DetDataSample

init_default_scope('densebox')


def _anchor_generator(config_path):
    cfg = Config.fromfile(config_path).model.bbox_head.anchor_generator
    return SSDAnchorGenerator(**{k: v for k, v in cfg.items() if k != 'type'})


@pytest.mark.parametrize('config,fmaps,total', [
    ('configs/ssd300_voc.py', [38, 19, 10, 5, 3, 1], 8732),
    ('configs/ssd300_coco.py', [38, 19, 10, 5, 3, 1], 8732),
    ('configs/ssd512_voc.py', [64, 32, 16, 8, 4, 2, 1], 24564),
    ('configs/ssd512_coco.py', [64, 32, 16, 8, 4, 2, 1], 24564),
])
def test_anchor_counts(config, fmaps, total):
    gen = _anchor_generator(config)
    anchors = gen.grid_anchors([(s, s) for s in fmaps])
    assert anchors.shape == (total, 4)


def test_ssd300_voc_anchor_sizes_and_centres():
    gen = _anchor_generator('configs/ssd300_voc.py')
    fmaps = [38, 19, 10, 5, 3, 1]
    anchors = gen.grid_anchors([(s, s) for s in fmaps])
    assert gen.num_base_anchors == [4, 6, 6, 6, 4, 4]
    mins = (30, 60, 111, 162, 213, 264)
    maxs = (60, 111, 162, 213, 264, 315)
    steps = (8, 16, 32, 64, 100, 300)
    start = 0
    for k, (s, n) in enumerate(zip(fmaps, gen.num_base_anchors)):
        level = anchors[start:start + s * s * n].view(s, s, n, 4)
        start += s * s * n
        wh = level[..., 2:] - level[..., :2]
        centre = (level[..., 2:] + level[..., :2]) / 2
        # First cell, first box: a square of min_size centred at (step/2, step/2).
        assert torch.allclose(wh[0, 0, 0], torch.tensor([mins[k], mins[k]], dtype=torch.float32))
        extra = math.sqrt(mins[k] * maxs[k])
        assert torch.allclose(wh[0, 0, 1], torch.tensor([extra, extra]), atol=1e-4)
        ratio2 = torch.tensor([mins[k] * math.sqrt(2), mins[k] / math.sqrt(2)])
        assert torch.allclose(wh[0, 0, 2], ratio2, atol=1e-4)
        assert torch.allclose(wh[0, 0, 3], ratio2.flip(0), atol=1e-4)
        # Row i, column j is centred at ((j + 0.5) step, (i + 0.5) step).
        i, j = s - 1, 0
        assert torch.allclose(centre[i, j, 0], torch.tensor([(j + .5) * steps[k], (i + .5) * steps[k]]))


def test_box_coder_round_trip():
    torch.manual_seed(0)
    anchors = torch.rand(500, 2) * 200
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(500, 2) * 100], 1)
    boxes = torch.rand(500, 2) * 200
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(500, 2) * 150], 1)
    coder = DeltaXYWHBoxCoder(variances=(0.1, 0.1, 0.2, 0.2))
    deltas = coder.encode(anchors, boxes)
    assert torch.allclose(coder.decode(anchors, deltas), boxes, atol=1e-3)
    # Variances scale the targets: centre offsets by 1/0.1, log sizes by 1/0.2.
    plain = DeltaXYWHBoxCoder(variances=(1, 1, 1, 1)).encode(anchors, boxes)
    assert torch.allclose(deltas, plain / torch.tensor([0.1, 0.1, 0.2, 0.2]), atol=1e-4)


def test_matcher_every_gt_gets_its_best_prior():
    torch.manual_seed(1)
    gen = _anchor_generator('configs/ssd300_voc.py')
    anchors = gen.grid_anchors([(s, s) for s in [38, 19, 10, 5, 3, 1]])
    # Small, oddly shaped boxes that no prior overlaps by 0.5, plus ordinary ones.
    gt = torch.tensor([[[10., 10, 14, 40], [100, 100, 200, 180], [250, 5, 299, 12], [0, 0, 0, 0]],
                       [[30., 40, 90, 100], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    matched, _ = SSDMatcher(0.5, 0.5)(anchors, gt, valid)
    iou = box_iou(gt, anchors[None].expand(2, -1, -1))
    for b in range(2):
        for g in range(int(valid[b].sum())):
            assert matched[b, iou[b, g].argmax()] == g
        # Every other positive has IoU >= 0.5 with its ground truth; padding is never matched.
        pos = matched[b] >= 0
        assert (matched[b][pos] < valid[b].sum()).all()
        best = iou[b][:, pos].max(0).values
        forced = torch.zeros_like(pos)
        forced[iou[b, :int(valid[b].sum())].argmax(1)] = True
        assert (best[~forced[pos]] >= 0.5).all()
        assert ((matched[b] == -1) == (~pos)).all()


def _caffe_match(iou, valid, thr=0.5):
    """Caffe SSD's MatchBBox (PER_PREDICTION) for one image, as a plain loop: (G, A) IoU ->
    (A,) ground-truth index per prior, -1 unmatched."""
    num_gt, num_priors = iou.shape
    match = [-1] * num_priors
    pool = [g for g in range(num_gt) if valid[g]]
    while pool:  # bipartite: the best remaining (prior, gt) pair, lowest indices on ties
        best, best_p, best_g = -1.0, -1, -1
        for p in range(num_priors):
            if match[p] != -1:
                continue
            for g in pool:
                if iou[g, p] > 1e-6 and iou[g, p] > best:
                    best, best_p, best_g = float(iou[g, p]), p, g
        if best_p == -1:
            break
        match[best_p] = best_g
        pool.remove(best_g)
    for p in range(num_priors):  # per prediction: the best ground truth at IoU >= thr
        if match[p] != -1:
            continue
        best, best_g = -1.0, -1
        for g in range(num_gt):
            if valid[g] and iou[g, p] > 1e-6 and iou[g, p] >= thr and iou[g, p] > best:
                best, best_g = float(iou[g, p]), g
        match[p] = best_g
    return torch.tensor(match)


def test_matcher_gives_two_boxes_sharing_a_best_prior_one_prior_each():
    """Both boxes' best prior is prior 0; box 0 overlaps it more (0.56 vs 0.39) and keeps
    it, box 1 gets its best remaining prior (prior 2, IoU 0.1) although it is far below 0.5:
    without the bipartite step box 1 would have no positive at all."""
    anchors = torch.tensor([[0., 0, 8, 8], [20, 20, 28, 28], [0, 0, 16, 16], [40, 40, 48, 48]])
    gt = torch.tensor([[[0., 0, 6, 6], [2, 2, 7, 7], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True, False]])
    iou = box_iou(gt, anchors[None])[0]
    assert iou[:2].argmax(1).tolist() == [0, 0] and iou[1, 0] < 0.5 and iou[1, 2] < 0.5
    matched, max_iou = SSDMatcher(0.5, 0.5)(anchors, gt, valid)
    assert matched[0].tolist() == [0, -1, 1, -1]
    assert max_iou[0, 0] == 2 and max_iou[0, 2] == 2
    # the other way round (box 1 first in the list) gives the same pairs
    matched, _ = SSDMatcher(0.5, 0.5)(anchors, gt[:, [1, 0, 2]], valid)
    assert matched[0].tolist() == [1, -1, 0, -1]


@pytest.mark.parametrize('seed', range(4))
def test_matcher_equals_caffe_match_bbox_loop(seed):
    """The batched rounds give exactly Caffe's sequential greedy matching, on crowded
    images where many boxes share best priors, with exact IoU ties (coordinates on a 4 px
    grid), padding, and a zero-area box that overlaps nothing."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 12, (40, 2), generator=g) * 4.0
    wh = torch.randint(1, 5, (40, 2), generator=g) * 4.0
    anchors = torch.cat([xy, xy + wh], 1)
    batch, num_gt = 3, 16
    gxy = torch.randint(0, 12, (batch, num_gt, 2), generator=g) * 4.0
    gwh = torch.randint(1, 4, (batch, num_gt, 2), generator=g) * 4.0
    gt = torch.cat([gxy, gxy + gwh], 2)
    gt[0, 3] = torch.tensor([100., 100, 100, 100])  # zero area: no prior for it
    valid = torch.ones(batch, num_gt, dtype=torch.bool)
    valid[1, 12:] = False
    valid[2, 8:] = False
    matched, _ = SSDMatcher(0.5, 0.5)(anchors, gt, valid)
    iou = box_iou(gt, anchors[None].expand(batch, -1, -1))
    shared = 0
    for b in range(batch):
        n = int(valid[b].sum())
        shared += n - len(set(iou[b, :n].argmax(1).tolist()))
        torch.testing.assert_close(matched[b], _caffe_match(iou[b], valid[b]), rtol=0, atol=0)
        # one prior per box, never shared; a box without one overlaps only taken priors
        own = greedy_bipartite_match(iou, valid)[b, :n]
        taken = own[own >= 0].tolist()
        assert len(taken) == len(set(taken)) and (own[n:] == -1).all()
        for i in torch.nonzero(own < 0).flatten().tolist():
            assert set(torch.nonzero(iou[b, i] > 1e-6).flatten().tolist()) <= set(taken)
    assert shared >= 3  # the case the bipartite step exists for really occurs here
    assert not (matched[0] == 3).any()


def test_hard_negative_mining_keeps_exactly_top_3n():
    torch.manual_seed(2)
    loss = torch.rand(3, 1000)
    negative = torch.rand(3, 1000) > 0.1
    num_pos = torch.tensor([5, 0, 400])  # 400 * 3 exceeds the negatives available
    keep = hard_negative_mask(loss, negative, num_pos * 3)
    for b in range(3):
        candidates = loss[b][negative[b]]
        n = min(int(num_pos[b]) * 3, len(candidates))
        assert int(keep[b].sum()) == n
        assert not (keep[b] & ~negative[b]).any()
        expected = set(torch.nonzero(negative[b]).flatten()[candidates.argsort(descending=True)[:n]].tolist())
        assert set(torch.nonzero(keep[b]).flatten().tolist()) == expected


def _build(config_path, **head):
    cfg = Config.fromfile(config_path).model
    cfg.backbone.init_cfg = None  # random weights: no ImageNet starting point needed here
    cfg.bbox_head.update(head)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_ssd300_parameters_and_outputs():
    model = _build('configs/ssd300_voc.py')
    # Same count as mmdetection's SSD300 VOC and torchvision's ssd300_vgg16 with 21 classes.
    assert sum(p.numel() for p in model.parameters()) == 26_285_486
    model.eval()
    with torch.no_grad():
        cls, reg = model(torch.zeros(1, 3, 300, 300), mode='tensor')
    assert cls.shape == (1, 8732, 21) and reg.shape == (1, 8732, 4)


def _sample(boxes, labels, size=96, scale=(1.0, 1.0)):
    s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=scale))
    s.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                                  labels=torch.tensor(labels, dtype=torch.long))
    return s


def _tiny_ssd():
    cfg = dict(
        type='SingleStageDetector',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[128] * 3, std=[64] * 3),
        backbone=dict(type='SSDVGG', arch='vgg16-quarter'),
        neck=dict(type='SSDNeck', in_channels=(128, 256), out_channels=(128, 256, 128, 64),
                  level_strides=(2, 2), level_paddings=(1, 1)),
        bbox_head=dict(type='SSDHead', num_classes=3, in_channels=(128, 256, 128, 64),
                       anchor_generator=dict(type='SSDAnchorGenerator', input_size=96,
                                             strides=(8, 16, 32, 64), min_sizes=(10, 25, 45, 70),
                                             max_sizes=(25, 45, 70, 96),
                                             ratios=([2], [2, 3], [2], [2]))))
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_loss_decreases_and_predict_rescales():
    torch.manual_seed(0)
    model = _tiny_ssd()
    x = torch.rand(2, 3, 96, 96)
    samples = [_sample([[10, 10, 50, 60]], [1]), _sample([[20, 30, 90, 80], [5, 5, 30, 20]], [0, 2])]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = model(x, samples, mode='loss')
        total = loss['loss_cls'] + loss['loss_bbox']
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < losses[0]

    model.eval()
    scaled = [_sample([[0, 0, 1, 1]], [0], scale=(0.5, 0.25)), _sample([[0, 0, 1, 1]], [0])]
    with torch.no_grad():
        out = model(x, scaled, mode='predict')
        plain = model(x, [_sample([[0, 0, 1, 1]], [0]), _sample([[0, 0, 1, 1]], [0])], mode='predict')
    p, q = out[0].pred_instances, plain[0].pred_instances
    assert len(p) > 0 and len(p) <= 200
    assert torch.allclose(p.bboxes, q.bboxes / torch.tensor([0.5, 0.25, 0.5, 0.25]))
    assert (p.scores[:-1] >= p.scores[1:]).all()
    assert p.labels.min() >= 0 and p.labels.max() < 3


def _reference_detections(head, cls_logits, box_deltas, anchors, img_hw):
    """Per image and class, written as loops: threshold, top-k, torchvision NMS, best M."""
    import torchvision
    cfg = head.test_cfg
    results = []
    for b in range(cls_logits.shape[0]):
        boxes = head.bbox_coder.decode(anchors[None], box_deltas[b:b + 1], max_shape=img_hw)[0]
        probs = cls_logits[b].softmax(-1)
        found = []
        for c in range(head.num_classes):
            scores, idx = probs[:, c + 1].topk(min(cfg['nms_pre'], len(anchors)))
            keep = scores > cfg['score_thr']
            scores, idx = scores[keep], idx[keep]
            kept = torchvision.ops.nms(boxes[idx], scores, cfg['nms_iou_thr'])
            found += [(float(scores[i]), c, boxes[idx[i]]) for i in kept]
        found.sort(key=lambda t: -t[0])
        found = found[:cfg['max_per_img']]
        results.append((torch.tensor([f[0] for f in found]), torch.tensor([f[1] for f in found]),
                        torch.stack([f[2] for f in found]) if found else torch.zeros(0, 4)))
    return results


def test_batched_post_processing_equals_per_image_loops():
    torch.manual_seed(1)
    head = _tiny_ssd().bbox_head
    head.test_cfg.update(nms_pre=50, max_per_img=40, score_thr=0.05)
    feats = [torch.randn(3, c, s, s) for c, s in zip((128, 256, 128, 64), (12, 6, 3, 2))]
    with torch.no_grad():
        cls_logits, box_deltas = head(feats)
        cls_logits = cls_logits * 2  # spread the softmax so that scores cross the threshold
        anchors = head.anchors(feats)
        metas = [dict(img_shape=(96, 96), scale_factor=(1.0, 1.0))] * 3
        results = head.predict_by_outputs(cls_logits, box_deltas, anchors, metas)
    expected = _reference_detections(head, cls_logits, box_deltas, anchors, (96, 96))
    assert sum(len(r.scores) for r in results) > 20
    assert all(len(r.scores.unique()) == len(r.scores) for r in results)  # no ties to order
    for got, (scores, labels, boxes) in zip(results, expected):
        torch.testing.assert_close(got.scores, scores, rtol=0, atol=0)
        assert torch.equal(got.labels, labels)
        torch.testing.assert_close(got.bboxes, boxes, rtol=0, atol=0)


def test_batched_detections_have_no_data_dependent_shapes():
    """On the meta device only shapes exist: any boolean-mask selection, nonzero() or .item()
    in the decoding + NMS path would raise. This is what lets a GPU run it with no host sync."""
    head = _tiny_ssd().bbox_head.to('meta')
    feats = [torch.empty(2, c, s, s, device='meta')
             for c, s in zip((128, 256, 128, 64), (12, 6, 3, 2))]
    cls_logits, box_deltas = head(feats)
    metas = [dict(img_shape=(96, 96), scale_factor=(0.5, 0.5))] * 2
    boxes, scores, labels, counts = head.batched_detections(cls_logits, box_deltas,
                                                            head.anchors(feats), metas)
    assert boxes.shape == (2, 200, 4) and scores.shape == labels.shape == (2, 200)
    assert counts.shape == (2,) and boxes.device.type == 'meta'


class _HostToDeviceCopies(TorchFunctionMode):
    """Records calls that put host data on another device: tensors made from Python data
    there (``torch.tensor(..., device=)``, ``new_tensor``) and ops with a CPU tensor in and
    a non-CPU tensor out (``.to``, ``.cuda``, ``copy_``). On a GPU each is a blocking copy."""

    FROM_DATA = {'tensor', 'as_tensor', 'new_tensor', 'asarray'}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        name = getattr(func, '__name__', str(func))
        off_host = any(t.device.type != 'cpu' for t in outputs)
        if off_host and (name in self.FROM_DATA or any(t.device.type == 'cpu' for t in inputs)):
            self.calls.append(name)
        return out


def test_post_processing_and_loss_copy_nothing_from_the_host():
    """The CPU stand-in for tests/test_ops.py::test_cuda_ssd_post_processing_never_syncs: on
    meta tensors (a device that is not the host), decoding + NMS with the scale factors made
    beforehand, and the training targets, put no host data on the device. The box coder's
    variances are made on the device once and cached."""
    head = _tiny_ssd().bbox_head.to('meta')
    feats = [torch.empty(2, c, s, s, device='meta')
             for c, s in zip((128, 256, 128, 64), (12, 6, 3, 2))]
    cls_logits, box_deltas = head(feats)
    anchors = head.anchors(feats)
    metas = [dict(img_shape=(96, 96), scale_factor=(0.5, 0.25))] * 2
    factors = scale_factor_tensor(metas, 'meta')
    assert factors.device.type == 'meta' and factors.shape == (2, 4)
    for attempt in range(2):  # the first call also makes the cached variances
        with _HostToDeviceCopies() as spy:
            head.batched_detections(cls_logits, box_deltas, anchors, metas, True, factors)
            head.bbox_coder.encode(anchors, anchors.flip(0))
        assert spy.calls == [], spy.calls
    # the spy does see such copies (the old code's variances and scale factors)
    with _HostToDeviceCopies() as spy:
        box_deltas.new_tensor((0.1, 0.1, 0.2, 0.2))
        torch.tensor([[0.5, 0.25]], device='meta')
        torch.ones(2).to('meta')
    assert spy.calls == ['new_tensor', 'tensor', 'to']


def test_scale_factor_tensor_and_cached_variances():
    metas = [dict(scale_factor=(0.5, 0.25)), dict(scale_factor=(2.0, 1.0))]
    assert scale_factor_tensor(metas, 'cpu').tolist() == [[0.5, 0.25, 0.5, 0.25],
                                                         [2.0, 1.0, 2.0, 1.0]]
    coder = DeltaXYWHBoxCoder(variances=(0.1, 0.2, 0.3, 0.4))
    var = coder.variance_tensor('cpu')
    assert var.dtype == torch.float32 and var.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert coder.variance_tensor(torch.device('cpu')) is var


def _torchvision_style_match(anchors, gt, pos_thr, neg_thr):
    """One image, written plainly: torchvision's SSDMatcher (each box forced onto its best
    prior, a later box winning a shared one), plus the ignored band."""
    matched = torch.full((len(anchors),), -1, dtype=torch.long)
    if len(gt) == 0:
        return matched
    iou = box_iou(gt, anchors)                                   # (G, A)
    best_iou, best_gt = iou.max(0)
    for g, a in enumerate(iou.argmax(1).tolist()):
        best_gt[a], best_iou[a] = g, 2.0
    matched[best_iou >= pos_thr] = best_gt[best_iou >= pos_thr]
    matched[(best_iou >= neg_thr) & (best_iou < pos_thr)] = -2
    return matched


@pytest.mark.parametrize('pos_thr,neg_thr', [(0.5, 0.5), (0.5, 0.4)])
def test_matcher_without_bipartite_step_is_torchvisions(pos_thr, neg_thr):
    gen = _anchor_generator('configs/ssd300_voc.py')
    anchors = gen.grid_anchors([(s, s) for s in [38, 19, 10, 5, 3, 1]])
    g = torch.Generator().manual_seed(3)
    counts = [0, 1, 7, 3]
    gt = torch.zeros(4, 7, 4)
    for b, n in enumerate(counts):
        xy = torch.rand(n, 2, generator=g) * 200
        gt[b, :n] = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 100 + 4], 1)
    gt[2, 5] = gt[2, 4]  # two objects with the same best prior: the later keeps it
    valid = torch.arange(7)[None] < torch.tensor(counts)[:, None]
    matcher = SSDMatcher(pos_thr, neg_thr, bipartite=False)
    matched, max_iou = matcher(anchors, gt, valid)
    for b, n in enumerate(counts):
        assert torch.equal(matched[b], _torchvision_style_match(anchors, gt[b, :n], pos_thr,
                                                                neg_thr))
    shared = box_iou(gt[2, 4:5], anchors).argmax()
    assert matched[2, shared] == 5  # the shared best prior went to the later box
    # no data-dependent shapes (nothing a GPU would wait for): runs on meta tensors
    meta, _ = matcher(anchors.to('meta'), gt.to('meta'), valid.to('meta'))
    assert meta.shape == (4, len(anchors)) and meta.device.type == 'meta'

"""densebox.ops against torchvision.ops and plain PyTorch references.

CPU tests run everywhere (the first one builds the C++ extension, ~15-90 s once, then it is
cached); the CUDA tests at the bottom run only where a GPU is visible.
"""
import warnings

import pytest
import torch
import torchvision

import densebox.ops as ops
from densebox.ops import _ext

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason='needs a CUDA device')


@pytest.fixture(autouse=True)
def ext_backend(monkeypatch):
    """Every test starts with the extension forced (a failed build raises, naming its log)."""
    monkeypatch.setenv('DENSEBOX_OPS', 'ext')
    _ext.reset()
    yield
    _ext.reset()


# ----------------------------------------------------------------------------- helpers

def make_boxes(n, seed=0, dtype=torch.float32, spread=200.0, clusters=None):
    """n boxes (xyxy) jittered around a few objects, so that many pairs overlap."""
    gen = torch.Generator().manual_seed(seed)
    clusters = clusters or max(1, n // 20)
    centers = torch.rand(clusters, 2, generator=gen) * spread
    sizes = torch.rand(clusters, 2, generator=gen) * spread / 4 + 4
    pick = torch.randint(0, clusters, (n,), generator=gen)
    ctr = centers[pick] + torch.randn(n, 2, generator=gen) * sizes[pick] * 0.15
    wh = sizes[pick] * (0.7 + 0.6 * torch.rand(n, 2, generator=gen))
    boxes = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)
    return boxes.to(dtype)


def make_scores(n, seed=0, ties=False, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed + 1000)
    if ties:  # only 5 distinct values: lots of equal scores
        return (torch.randint(0, 5, (n,), generator=gen).float() / 5).to(dtype)
    return ((torch.randperm(n, generator=gen).float() + 1) / n).to(dtype)  # all distinct


def reference_nms(boxes, scores, iou_threshold):
    """Greedy NMS written plainly: stable sort, keep the best, drop IoU > threshold."""
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    alive = torch.ones(len(b), dtype=torch.bool)
    keep = []
    for i in range(len(b)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = torch.arange(i + 1, len(b))
        w = (torch.minimum(b[i, 2], b[rest, 2]) - torch.maximum(b[i, 0], b[rest, 0])).clamp(min=0)
        h = (torch.minimum(b[i, 3], b[rest, 3]) - torch.maximum(b[i, 1], b[rest, 1])).clamp(min=0)
        inter = w * h
        iou = inter / (area[i] + area[rest] - inter)
        alive[rest[iou.double() > iou_threshold]] = False
    return order[torch.tensor(keep, dtype=torch.long)]


def reference_batched_nms(boxes, scores, idxs, iou_threshold):
    """Per-group greedy NMS, then all kept boxes by decreasing score (stable)."""
    keep = torch.zeros(len(boxes), dtype=torch.bool)
    for g in torch.unique(idxs):
        members = torch.nonzero(idxs == g).flatten()
        keep[members[reference_nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.nonzero(keep).flatten()
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


# ----------------------------------------------------------------------------- nms

def test_backend_is_the_extension():
    assert ops.backend() == 'ext'
    assert ops.backend('cuda' if CUDA else 'cpu') == 'ext'


@pytest.mark.parametrize('n', [2, 37, 600, 2500])
@pytest.mark.parametrize('iou_threshold', [0.3, 0.5, 0.7])
@pytest.mark.parametrize('ties', [False, True])
def test_nms_matches_torchvision_and_reference(n, iou_threshold, ties):
    boxes, scores = make_boxes(n, seed=n), make_scores(n, seed=n, ties=ties)
    kept = ops.nms(boxes, scores, iou_threshold)
    assert kept.dtype == torch.int64
    assert torch.equal(kept, torchvision.ops.nms(boxes, scores, iou_threshold))
    if n <= 600:
        assert torch.equal(kept, reference_nms(boxes, scores, iou_threshold))
    assert 0 < kept.numel() <= n
    if n > 37:
        assert kept.numel() < n  # the clusters overlap: something must be suppressed


def test_nms_tied_scores_keep_index_order():
    # identical boxes, equal scores: the lowest index wins, the others are suppressed
    boxes = torch.tensor([[0, 0, 10, 10]] * 4 + [[50, 50, 60, 60]] * 2, dtype=torch.float32)
    scores = torch.tensor([0.5, 0.5, 0.9, 0.5, 0.5, 0.5])
    assert ops.nms(boxes, scores, 0.5).tolist() == [2, 4]
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [2, 4]


def test_nms_empty_and_single():
    empty = ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    one = ops.nms(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.3]), 0.5)
    assert one.tolist() == [0]


def test_nms_degenerate_boxes():
    boxes = make_boxes(300, seed=3)
    boxes[::7, 2] = boxes[::7, 0]          # zero width
    boxes[::11, 3] = boxes[::11, 1]        # zero height
    boxes[5::13] = boxes[5::13, :1].repeat(1, 4)  # points
    boxes[20:30] = boxes[19]               # exact duplicates
    scores = make_scores(300, seed=3, ties=True)
    kept = ops.nms(boxes, scores, 0.5)
    assert torch.equal(kept, torchvision.ops.nms(boxes, scores, 0.5))
    assert torch.equal(kept, reference_nms(boxes, scores, 0.5))
    zero_area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) == 0
    assert zero_area[kept].any()  # 0/0 IoU never suppresses: degenerate boxes survive


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_nms_dtypes(dtype):
    boxes = make_boxes(500, seed=5).to(dtype)
    scores = make_scores(500, seed=5).to(dtype)
    kept = ops.nms(boxes, scores, 0.5)
    # reduced types are compared in float32 on the CPU (torchvision rejects them there)
    exact = boxes.float() if dtype in (torch.float16, torch.bfloat16) else boxes
    assert torch.equal(kept, torchvision.ops.nms(exact, scores.to(exact.dtype), 0.5))
    assert torch.equal(kept, reference_nms(exact, scores, 0.5))


def test_nms_non_contiguous_inputs():
    boxes, scores = make_boxes(400, seed=6), make_scores(400, seed=6)
    wide = torch.zeros(400, 8)
    wide[:, ::2] = boxes
    strided_scores = torch.stack([scores, -scores], dim=1)[:, 0]
    assert not wide[:, ::2].is_contiguous() and not strided_scores.is_contiguous()
    assert torch.equal(ops.nms(wide[:, ::2], strided_scores, 0.5), ops.nms(boxes, scores, 0.5))


def test_nms_rejects_bad_input():
    with pytest.raises(ValueError, match='boxes must be a .N, 4.'):
        ops.nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match='scores must be .3,.'):
        ops.nms(torch.zeros(3, 4), torch.zeros(4), 0.5)
    with pytest.raises(TypeError, match='floating point'):
        ops.nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5)


# ----------------------------------------------------------------------------- batched_nms

@pytest.mark.parametrize('n,classes', [(400, 3), (3000, 80)])
def test_batched_nms_matches_torchvision(n, classes):
    boxes, scores = make_boxes(n, seed=n, clusters=8), make_scores(n, seed=n)
    idxs = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(n))
    kept = ops.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(kept, torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))
    assert torch.equal(kept, reference_batched_nms(boxes, scores, idxs, 0.5))
    # classes never suppress each other: more survive than with class-agnostic nms
    assert kept.numel() > ops.nms(boxes, scores, 0.5).numel()


def test_batched_nms_ties_and_arbitrary_group_ids():
    boxes, scores = make_boxes(800, seed=8, clusters=10), make_scores(800, seed=8, ties=True)
    gen = torch.Generator().manual_seed(8)
    raw = torch.randint(0, 6, (800,), generator=gen)
    # far-apart and negative ids: groups are segments, not coordinate offsets
    idxs = torch.tensor([-7, 0, 3, 10**12, 5, 2**40])[raw]
    kept = ops.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(kept, reference_batched_nms(boxes, scores, raw, 0.5))


def test_batched_nms_over_images():
    num_images, classes, n = 4, 5, 1200
    gen = torch.Generator().manual_seed(9)
    boxes, scores = make_boxes(n, seed=9, clusters=6), make_scores(n, seed=9)
    labels = torch.randint(0, classes, (n,), generator=gen)
    images = torch.randint(0, num_images, (n,), generator=gen)
    kept = ops.batched_nms(boxes, scores, labels, 0.5, image_idxs=images)
    combined = images * classes + labels
    assert torch.equal(kept, ops.batched_nms(boxes, scores, combined, 0.5))
    assert torch.equal(kept, reference_batched_nms(boxes, scores, combined, 0.5))
    # the same boxes in different images are independent: image-blind NMS keeps fewer
    assert kept.numel() > ops.batched_nms(boxes, scores, labels, 0.5).numel()


def test_batched_nms_singleton_groups_keep_everything():
    boxes, scores = make_boxes(500, seed=23), make_scores(500, seed=23, ties=True)
    kept = ops.batched_nms(boxes, scores, torch.arange(500), 0.5)
    assert torch.equal(kept, torch.sort(scores, descending=True, stable=True).indices)


def test_batched_nms_empty_and_bad_idxs():
    assert ops.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0
    with pytest.raises(ValueError, match='idxs must be'):
        ops.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r'\[0, 2\*\*32\)'):
        ops.batched_nms(torch.zeros(2, 4), torch.zeros(2), torch.tensor([-1, 0]), 0.5,
                        image_idxs=torch.zeros(2))


# ----------------------------------------------------------------------------- box_iou

# ----------------------------------------------------------------------------- segmented nms

def make_table(groups, k, seed=0, dtype=torch.float32, valid='random'):
    """(G, k, 4) boxes (rows already 'sorted': position = rank) and a (G, k) valid mask."""
    gen = torch.Generator().manual_seed(seed + 7)
    boxes = make_boxes(groups * k, seed=seed, clusters=max(1, groups * k // 15)).view(groups, k, 4)
    if valid == 'prefix':  # what a per-class top-k above a score threshold gives
        lengths = torch.randint(0, k + 1, (groups, 1), generator=gen)
        mask = torch.arange(k)[None] < lengths
    else:
        mask = torch.rand(groups, k, generator=gen) < 0.8
    return boxes.to(dtype), mask


def reference_segmented_nms(boxes, valid, iou_threshold):
    """Row by row: torchvision.ops.nms on the valid boxes, scores decreasing along the row."""
    keep = torch.zeros(boxes.shape[:2], dtype=torch.bool)
    for g in range(boxes.shape[0]):
        members = torch.nonzero(valid[g]).flatten()
        if len(members):
            scores = -members.double()
            kept = torchvision.ops.nms(boxes[g, members].double(), scores, iou_threshold)
            keep[g, members[kept]] = True
    return keep


@pytest.mark.parametrize('groups,k', [(1, 1), (3, 50), (160, 200), (7, 1000)])
@pytest.mark.parametrize('valid', ['prefix', 'random'])
def test_segmented_nms_matches_per_row_nms(groups, k, valid):
    boxes, mask = make_table(groups, k, seed=groups + k, valid=valid)
    for iou_threshold in (0.3, 0.5):
        keep = ops.segmented_nms(boxes, mask, iou_threshold)
        assert keep.shape == (groups, k) and keep.dtype == torch.bool
        assert torch.equal(keep, reference_segmented_nms(boxes, mask, iou_threshold))
        assert not (keep & ~mask).any()


def test_segmented_nms_equals_batched_nms_on_the_flattened_table():
    """The SSD head's old path: batched_nms over the valid entries, one group per row."""
    boxes, mask = make_table(40, 120, seed=3, valid='prefix')
    rows, cols = torch.nonzero(mask, as_tuple=True)
    kept = ops.batched_nms(boxes[rows, cols], -cols.float(), rows, 0.45)
    expected = torch.zeros_like(mask)
    expected[rows[kept], cols[kept]] = True
    assert torch.equal(ops.segmented_nms(boxes, mask, 0.45), expected)


def test_segmented_nms_edge_cases():
    assert ops.segmented_nms(torch.zeros(0, 5, 4), None, 0.5).shape == (0, 5)
    assert ops.segmented_nms(torch.zeros(4, 0, 4), None, 0.5).shape == (4, 0)
    # no valid mask: everything takes part; identical boxes keep only the first of each row
    same = torch.tensor([10.0, 10, 50, 50]).expand(2, 3, 4)
    assert ops.segmented_nms(same, None, 0.5).tolist() == [[True, False, False]] * 2
    # an invalid box suppresses nothing, even when it comes first
    assert ops.segmented_nms(same, torch.tensor([[False, True, True]] * 2), 0.5).tolist() == \
        [[False, True, False]] * 2
    # degenerate (zero-area) boxes: IoU 0 / NaN never exceeds the threshold
    flat = torch.tensor([[[5.0, 5, 5, 5], [5, 5, 5, 5], [0, 0, 0, 10]]])
    assert ops.segmented_nms(flat, None, 0.5).tolist() == \
        reference_segmented_nms(flat, torch.ones(1, 3, dtype=torch.bool), 0.5).tolist()


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_segmented_nms_dtypes(dtype):
    boxes, mask = make_table(6, 80, seed=11, dtype=dtype)
    expected = reference_segmented_nms(boxes.float(), mask, 0.5)
    assert torch.equal(ops.segmented_nms(boxes, mask, 0.5), expected)


def exact_iou_pair(dtype):
    """Two boxes whose IoU is exactly the double nearest 0.45: intersection 9 over union 20
    (IEEE division is correctly rounded, so 9.0 / 20.0 == 0.45 in float64)."""
    return torch.tensor([[[0.0, 0.0, 14.0, 1.0], [5.0, 0.0, 20.0, 1.0]]], dtype=dtype)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_segmented_nms_iou_at_the_threshold_is_kept(dtype):
    """IoU == threshold is not 'above' it, in every box type. The CUDA kernel once compared
    against float32(0.45) = 0.449999988..., which suppresses such a pair in float64: this is
    that case on the CPU kernel, which CUDA must now match (test_cuda_segmented_nms_exact_iou)."""
    pair = exact_iou_pair(dtype)
    assert ops.segmented_nms(pair, None, 0.45).tolist() == [[True, True]]
    assert ops.segmented_nms(pair, None, 0.44).tolist() == [[True, False]]
    as_float32 = float(torch.tensor(0.45, dtype=torch.float32))  # 0.449999988079071
    expected = [[True, False]] if dtype == torch.float64 else [[True, True]]
    assert ops.segmented_nms(pair, None, as_float32).tolist() == expected
    # the plain kernels agree (torchvision's CPU nms compares in double too)
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    assert ops.nms(pair[0], scores, 0.45).tolist() == [0, 1]
    assert torchvision.ops.nms(pair[0], scores, 0.45).tolist() == [0, 1]


def test_segmented_nms_non_contiguous_and_meta():
    boxes, mask = make_table(5, 60, seed=12)
    wide = torch.zeros(60, 5, 8)
    wide[..., ::2] = boxes.transpose(0, 1)  # a strided, transposed view holding the same boxes
    view = wide[..., ::2].transpose(0, 1)
    assert not view.is_contiguous()
    assert torch.equal(ops.segmented_nms(view, mask.t().contiguous().t(), 0.5),
                       ops.segmented_nms(boxes, mask, 0.5))
    # on the meta device only shapes flow: proof that the op has no data-dependent output
    meta = ops.segmented_nms(boxes.to('meta'), mask.to('meta'), 0.5)
    assert meta.device.type == 'meta' and meta.shape == (5, 60) and meta.dtype == torch.bool


def test_segmented_nms_rejects_bad_input():
    with pytest.raises(ValueError, match=r'boxes must be a \(G, k, 4\)'):
        ops.segmented_nms(torch.zeros(5, 4), None, 0.5)
    with pytest.raises(ValueError, match='valid must be'):
        ops.segmented_nms(torch.zeros(2, 5, 4), torch.ones(2, 4, dtype=torch.bool), 0.5)
    with pytest.raises(TypeError, match='floating point'):
        ops.segmented_nms(torch.zeros(2, 5, 4, dtype=torch.int32), None, 0.5)


def test_segmented_nms_torchvision_fallback(monkeypatch):
    boxes, mask = make_table(30, 90, seed=13, valid='prefix')
    expected = ops.segmented_nms(boxes, mask, 0.5)
    monkeypatch.setenv('DENSEBOX_OPS', 'torchvision')
    _ext.reset()
    assert torch.equal(ops.segmented_nms(boxes, mask, 0.5), expected)
    assert torch.equal(ops.segmented_nms(boxes, None, 0.5),
                       reference_segmented_nms(boxes, torch.ones_like(mask), 0.5))


def test_box_iou_matches_torchvision():
    a, b = make_boxes(50, seed=10), make_boxes(70, seed=11)
    assert torch.allclose(ops.box_iou(a, b), torchvision.ops.box_iou(a, b), atol=0, rtol=1e-6)
    ints = a.round().to(torch.int64)
    assert torch.allclose(ops.box_iou(ints, ints), torchvision.ops.box_iou(ints, ints),
                          equal_nan=True)
    assert ops.box_iou(a, torch.zeros(0, 4)).shape == (50, 0)
    assert torch.allclose(torch.diagonal(ops.box_iou(a, a)), torch.ones(50))


def test_box_iou_leading_dims_offset_and_eps():
    a, b = make_boxes(12, seed=12), make_boxes(9, seed=13)
    batched = ops.box_iou(torch.stack([a, a.flip(0)]), torch.stack([b, b]))      # (2, 12, 9)
    assert batched.shape == (2, 12, 9)
    assert torch.equal(batched[0], ops.box_iou(a, b))
    assert torch.equal(batched[1], ops.box_iou(a.flip(0), b))
    assert ops.box_iou(a[None], b).shape == (1, 12, 9)                          # broadcast
    # offset=1 (inclusive pixels) is continuous IoU of boxes one pixel larger
    grow = torch.tensor([0., 0., 1., 1.])
    near = a[3:] + 1.5                                              # overlaps a's boxes
    assert (torchvision.ops.box_iou(a, near) > 0.1).sum() > 20
    assert torch.allclose(ops.box_iou(a, near, offset=1),
                          torchvision.ops.box_iou(a + grow, near + grow))
    zero = torch.zeros(1, 4)
    assert ops.box_iou(zero, zero).isnan().all()                    # torchvision's 0 / 0
    assert ops.box_iou(zero, zero, eps=1e-9).eq(0).all()
    inverted = torch.tensor([[10., 10., 0., 0.]])                   # negative sides: area 0
    assert ops.box_iou(inverted, a, eps=1e-9).eq(0).all()
    with pytest.raises(ValueError, match=r'boxes1 must be \(\.\.\., N, 4\)'):
        ops.box_iou(torch.zeros(4), a)


# ----------------------------------------------------------------------------- roi_align

def make_rois(k, batch, size, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=gen) * size * 1.1 - size * 0.1  # some start outside
    wh = torch.rand(k, 2, generator=gen) * size * 0.6
    wh[::5] *= 0.02                                                # sub-pixel RoIs
    rois = torch.cat([torch.randint(0, batch, (k, 1), generator=gen).float(), xy, xy + wh], 1)
    rois[3::9, 3:] = rois[3::9, 1:3] - 1.0                          # inverted boxes
    return rois.to(dtype)


ROI_CASES = [  # output_size, spatial_scale, sampling_ratio, aligned
    ((7, 7), 0.5, -1, False),
    ((7, 7), 0.5, -1, True),
    ((5, 3), 1.0, 2, False),
    ((4, 4), 0.25, 0, True),
]


@pytest.mark.parametrize('output_size,scale,ratio,aligned', ROI_CASES)
@pytest.mark.parametrize('channels,channels_last', [(6, False), (16, False), (8, True)])
def test_roi_align_forward_backward_match_torchvision(output_size, scale, ratio, aligned,
                                                      channels, channels_last):
    # 6 channels: per-plane kernel; 16 channels with many RoIs, or a channels-last map:
    # the channels-last forward kernel
    gen = torch.Generator().manual_seed(12)
    feats = torch.randn(2, channels, 20, 24, generator=gen)
    if channels_last:
        feats = feats.to(memory_format=torch.channels_last)
    rois = make_rois(40, batch=2, size=24 / scale, seed=12)  # image-sized coordinates
    x1 = feats.clone().requires_grad_()
    x2 = feats.clone().requires_grad_()
    ours = ops.roi_align(x1, rois, output_size, scale, ratio, aligned)
    theirs = torchvision.ops.roi_align(x2, rois, output_size, scale, ratio, aligned)
    assert ours.shape == (40, channels, *output_size) and ours.is_contiguous()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    grad = torch.randn(ours.shape, generator=gen)
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-4, rtol=0)
    assert x1.grad.abs().sum() > 0


def test_roi_align_list_of_boxes_and_module():
    gen = torch.Generator().manual_seed(13)
    feats = torch.randn(3, 4, 16, 16, generator=gen)
    boxes = [make_boxes(5, seed=1, spread=30), make_boxes(0, seed=2), make_boxes(7, seed=3,
                                                                             spread=30)]
    ours = ops.roi_align(feats, boxes, 3, 0.5, 2, True)
    theirs = torchvision.ops.roi_align(feats, boxes, 3, 0.5, 2, True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    module = ops.RoIAlign((3, 3), 0.5, 2, True)
    torch.testing.assert_close(module(feats, ops.boxes_to_rois(boxes)), ours, atol=0, rtol=0)


def test_roi_align_gradcheck_float64():
    gen = torch.Generator().manual_seed(14)
    feats = torch.randn(2, 2, 7, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.6, 5.2, 4.9], [1, 2.2, 1.1, 6.7, 6.3],
                         [1, -1.5, 3.0, 3.4, 8.5]], dtype=torch.float64)
    for aligned in (False, True):
        assert torch.autograd.gradcheck(
            lambda x: ops.roi_align(x, rois, (3, 2), 1.0, 2, aligned), (feats,))


def test_roi_align_float16_on_cpu():
    gen = torch.Generator().manual_seed(15)
    feats = torch.randn(1, 3, 12, 12, generator=gen)
    rois = make_rois(10, batch=1, size=12, seed=15)
    ours = ops.roi_align(feats.half(), rois.half(), 2, 1.0, 2, True)
    assert ours.dtype == torch.float16
    reference = torchvision.ops.roi_align(feats.half().float(), rois.half().float(), 2, 1.0, 2,
                                          True)
    torch.testing.assert_close(ours.float(), reference, atol=2e-3, rtol=2e-3)


def test_roi_align_rejects_bad_input():
    feats = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r'rois tensor must be \(K, 5\)'):
        ops.roi_align(feats, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match='input must be a'):
        ops.roi_align(feats[0], torch.zeros(1, 5), 2)
    with pytest.raises(RuntimeError, match='not an image index'):
        ops.roi_align(feats, torch.tensor([[2.0, 0, 0, 4, 4]]), 2)


# ----------------------------------------------------------------------------- fallback

def _sample_ops():
    boxes, scores = make_boxes(300, seed=16), make_scores(300, seed=16)
    idxs = torch.arange(300) % 4
    feats = torch.randn(1, 2, 10, 10, generator=torch.Generator().manual_seed(16))
    rois = make_rois(8, batch=1, size=10, seed=16)
    return (ops.nms(boxes, scores, 0.5), ops.batched_nms(boxes, scores, idxs, 0.5),
            ops.roi_align(feats, rois, 3, 1.0, -1, True))


def _assert_same(a, b):
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.testing.assert_close(a[2], b[2], atol=1e-5, rtol=0)


def test_forced_torchvision_backend(monkeypatch):
    expected = _sample_ops()
    monkeypatch.setenv('DENSEBOX_OPS', 'torchvision')
    _ext.reset()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a forced choice warns about nothing
        assert ops.backend() == 'torchvision'
        _assert_same(_sample_ops(), expected)


def test_unavailable_extension_falls_back_with_one_warning(monkeypatch):
    expected = _sample_ops()

    def broken_loader(with_cuda):
        raise _ext.ExtensionBuildError('simulated compiler failure', log_path=None)

    monkeypatch.setattr(_ext, 'load_extension', broken_loader)
    monkeypatch.setenv('DENSEBOX_OPS', 'auto')
    _ext.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        got = _sample_ops()
        again = _sample_ops()
        assert ops.backend() == 'torchvision'
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert 'simulated compiler failure' in messages[0] and 'torchvision' in messages[0]
    _assert_same(got, expected)
    _assert_same(again, expected)

    monkeypatch.setenv('DENSEBOX_OPS', 'ext')  # forced: the failure is an error
    _ext.reset()
    with pytest.raises(_ext.ExtensionBuildError, match='simulated compiler failure'):
        ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)


def test_bad_backend_name(monkeypatch):
    monkeypatch.setenv('DENSEBOX_OPS', 'mmcv')
    _ext.reset()
    with pytest.raises(ValueError, match='DENSEBOX_OPS'):
        ops.backend()


def test_build_failure_names_its_log(monkeypatch, tmp_path):
    monkeypatch.setenv('DENSEBOX_OPS_CACHE', str(tmp_path))
    monkeypatch.setattr(_ext, 'CFLAGS', _ext.CFLAGS + ('-fno-such-flag-densebox',))
    with pytest.raises(_ext.ExtensionBuildError) as info:
        _ext.build(with_cuda=False)
    log = info.value.log_path
    assert log is not None and log.is_file() and log.parent.parent == tmp_path
    assert 'fno-such-flag-densebox' in log.read_text()
    assert str(log) in str(info.value)


# ----------------------------------------------------------------------------- CUDA

# CUDA tests use whole-pixel boxes: areas and intersections are then exact in float32, so
# whether a compiler fuses multiply-adds cannot move an IoU across the threshold, and the
# CPU, CUDA and torchvision kernels must agree exactly.

def pixel_boxes(n, seed, spread=1000.0, clusters=None):
    return make_boxes(n, seed=seed, spread=spread, clusters=clusters).round()


@needs_cuda
@pytest.mark.parametrize('n', [0, 1, 63, 64, 65, 1000, 5000, 30000])
@pytest.mark.parametrize('ties', [False, True])
def test_cuda_nms_matches_torchvision(n, ties):
    boxes, scores = pixel_boxes(n, seed=n).cuda(), make_scores(n, seed=n, ties=ties).cuda()
    kept = ops.nms(boxes, scores, 0.5)
    assert kept.is_cuda and kept.dtype == torch.int64
    assert torch.equal(kept, torchvision.ops.nms(boxes, scores, 0.5))
    assert torch.equal(kept.cpu(), ops.nms(boxes.cpu(), scores.cpu(), 0.5))


@needs_cuda
def test_cuda_nms_global_state_path(monkeypatch):
    boxes, scores = pixel_boxes(3000, seed=17).cuda(), make_scores(3000, seed=17).cuda()
    expected = torchvision.ops.nms(boxes, scores, 0.6)
    monkeypatch.setenv('DENSEBOX_NMS_GLOBAL_STATE', '1')
    assert torch.equal(ops.nms(boxes, scores, 0.6), expected)


@needs_cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.float64])
def test_cuda_nms_dtypes(dtype):
    boxes = pixel_boxes(2000, seed=18, spread=500).to('cuda', dtype)
    scores = make_scores(2000, seed=18).to('cuda', dtype)
    assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))


@needs_cuda
def test_cuda_batched_nms_over_images_and_classes():
    num_images, classes, n = 8, 80, 20000
    gen = torch.Generator().manual_seed(19)
    boxes, scores = pixel_boxes(n, seed=19, spread=600, clusters=40), make_scores(n, seed=19)
    labels = torch.randint(0, classes, (n,), generator=gen)
    images = torch.randint(0, num_images, (n,), generator=gen)
    cpu = ops.batched_nms(boxes, scores, labels, 0.5, image_idxs=images)
    gpu = ops.batched_nms(boxes.cuda(), scores.cuda(), labels.cuda(), 0.5,
                          image_idxs=images.cuda())
    assert torch.equal(gpu.cpu(), cpu)
    combined = (images * classes + labels).cuda()
    assert torch.equal(ops.batched_nms(boxes.cuda(), scores.cuda(), combined, 0.5), gpu)
    # on the CPU with this many boxes torchvision runs plain per-group nms (exact IoUs)
    assert torch.equal(cpu, torchvision.ops.batched_nms(boxes, scores, combined.cpu(), 0.5))


@needs_cuda
def test_cuda_batched_nms_detector_batch():
    # SSD-style post-processing of a batch: images x classes x top-k candidates in one call
    # (one group per image and class; the mask grows with the group sizes, not with N^2)
    images, classes, k = 16, 80, 200
    n = images * classes * k
    gen = torch.Generator().manual_seed(22)
    boxes = pixel_boxes(n, seed=22, spread=600, clusters=n // 40)
    scores = torch.rand(n, generator=gen)
    groups = torch.arange(images * classes).repeat_interleave(k)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    gpu = ops.batched_nms(boxes.cuda(), scores.cuda(), groups.cuda(), 0.45)
    assert torch.cuda.max_memory_allocated() - base < 512 * 2**20  # N^2/64 words: 16 GiB
    assert torch.equal(gpu.cpu(), ops.batched_nms(boxes, scores, groups, 0.45))
    singles = ops.batched_nms(boxes[:5000].cuda(), scores[:5000].cuda(),
                              torch.arange(5000).cuda(), 0.45)  # every box its own group
    by_score = torch.sort(scores[:5000], descending=True, stable=True).indices
    assert torch.equal(singles.cpu(), by_score)


@needs_cuda
@pytest.mark.parametrize('output_size,scale,ratio,aligned', ROI_CASES)
def test_cuda_roi_align_matches_torchvision(output_size, scale, ratio, aligned):
    gen = torch.Generator().manual_seed(20)
    feats = torch.randn(2, 16, 40, 48, generator=gen).cuda()
    rois = make_rois(200, batch=2, size=96, seed=20).cuda()
    x1 = feats.clone().requires_grad_()
    x2 = feats.clone().requires_grad_()
    ours = ops.roi_align(x1, rois, output_size, scale, ratio, aligned)
    theirs = torchvision.ops.roi_align(x2, rois, output_size, scale, ratio, aligned)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    grad = torch.randn(ours.shape, generator=gen).cuda()
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-4, rtol=0)
    cpu = ops.roi_align(feats.cpu(), rois.cpu(), output_size, scale, ratio, aligned)
    torch.testing.assert_close(ours.cpu(), cpu, atol=1e-5, rtol=0)


@needs_cuda
def test_cuda_roi_align_half_and_gradcheck():
    gen = torch.Generator().manual_seed(21)
    feats = torch.randn(1, 4, 16, 16, generator=gen).cuda()
    rois = make_rois(30, batch=1, size=16, seed=21).cuda()
    half = ops.roi_align(feats.half(), rois.half(), 3, 1.0, 2, True)
    full = ops.roi_align(feats.half().float(), rois.half().float(), 3, 1.0, 2, True)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, atol=2e-3, rtol=2e-3)
    x = torch.randn(1, 2, 6, 6, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    r = torch.tensor([[0, 0.5, 0.2, 4.1, 5.3]], dtype=torch.float64).cuda()
    assert torch.autograd.gradcheck(lambda t: ops.roi_align(t, r, 2, 1.0, 2, False), (x,))


@needs_cuda
@pytest.mark.parametrize('groups,k', [(1, 1), (160, 200), (2560, 200), (3, 2000)])
@pytest.mark.parametrize('dtype', [torch.float16, torch.float32, torch.float64])
def test_cuda_segmented_nms_matches_cpu(groups, k, dtype):
    boxes, mask = make_table(groups, k, seed=groups, valid='prefix')
    boxes = boxes.round().to(dtype)  # whole pixels: exact IoUs on both devices
    keep = ops.segmented_nms(boxes.cuda(), mask.cuda(), 0.45)
    assert keep.is_cuda and keep.dtype == torch.bool
    assert torch.equal(keep.cpu(), ops.segmented_nms(boxes, mask, 0.45))


@needs_cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.float32, torch.float64])
def test_cuda_segmented_nms_exact_iou(dtype):
    """IoU exactly 0.45: CUDA keeps the pair as the CPU kernel does (float64 once differed)."""
    pair = exact_iou_pair(dtype)
    for threshold in (0.45, float(torch.tensor(0.45, dtype=torch.float32)), 0.44):
        assert torch.equal(ops.segmented_nms(pair.cuda(), None, threshold).cpu(),
                           ops.segmented_nms(pair, None, threshold)), threshold
    # nms keeps matching torchvision's CUDA kernel (which compares against float32(0.45))
    scores = torch.tensor([0.9, 0.8], dtype=dtype, device='cuda')
    assert torch.equal(ops.nms(pair[0].cuda(), scores, 0.45),
                       torchvision.ops.nms(pair[0].cuda(), scores, 0.45))


@needs_cuda
def test_cuda_ssd_post_processing_never_syncs():
    """SSD decoding + NMS for a batch runs with CUDA's sync checker set to raise."""
    pytest.importorskip('mmengine', reason='the SSD head needs mmengine (tools/gpu_check.sh '
                                           'installs it from .whl/)')
    from densebox.models.det_heads.ssd_head import SSDHead, scale_factor_tensor
    head = SSDHead(num_classes=80, in_channels=(8, 8),
                   anchor_generator=dict(type='SSDAnchorGenerator', input_size=64,
                                         strides=(8, 16), ratios=([2], [2, 3]),
                                         min_sizes=(10, 25), max_sizes=(25, 45))).cuda()
    feats = [torch.randn(4, 8, 8, 8, device='cuda'), torch.randn(4, 8, 4, 4, device='cuda')]
    cls_logits, box_deltas = head(feats)
    anchors = head.anchors(feats)
    metas = [dict(img_shape=(64, 64), scale_factor=(0.5, 0.25))] * 4
    factors = scale_factor_tensor(metas, 'cuda')  # per batch: made before the checked region
    ops.segmented_nms(torch.zeros(1, 1, 4, device='cuda'), None, 0.5)  # load the extension
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        boxes, scores, labels, counts = head.batched_detections(cls_logits, box_deltas,
                                                                anchors, metas, True, factors)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    results = head.predict_by_outputs(cls_logits, box_deltas, anchors, metas)
    assert [len(r.scores) for r in results] == counts.tolist()
    for r, b, s in zip(results, boxes, scores):
        torch.testing.assert_close(r.bboxes, b[:len(r.scores)])
        torch.testing.assert_close(r.scores, s[:len(r.scores)])

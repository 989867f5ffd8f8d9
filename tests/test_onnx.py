"""ONNX export: onnxruntime's outputs against PyTorch's for a detector (decoding + NMS in
the graph) and a segmentor (arg-max label map), with a dynamic batch."""
import json
import runpy
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import densebox
from densebox.deploy import NonMaxSuppression, export_onnx
from densebox.setup_env import register_all_modules
from densebox.structures import DetDataSample, SegDataSample

register_all_modules()
QUICKSTART = 'configs/quickstart_ssd_shapes.py'


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def _det_model(max_per_img):
    """The quickstart SSD with random weights; its class logits are widened so scores are
    far from ties (near-equal scores could legitimately swap places between runtimes)."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='random weights'):
        model = densebox.init_model(QUICKSTART, device='cpu',
                                    cfg_options={'model.test_cfg.max_per_img': max_per_img})
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'cls_convs' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _torch_predict(model, images, sample_type=DetDataSample):
    """The model's own path: data preprocessor + predict on uint8 images."""
    h, w = images.shape[-2:]
    samples = [sample_type(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0))) for _ in images]
    with torch.no_grad():
        return model.test_step(dict(inputs=[i.to(torch.uint8) for i in images],
                                    data_samples=samples))


def _match(boxes, scores, labels, ref):
    """Every ONNX detection equals one PyTorch detection (label, box within 1e-3, score
    within 1e-5); rows are compared as sets because equal-rank ties may swap."""
    used = np.zeros(len(ref.scores), bool)
    rb, rs, rl = ref.bboxes.numpy(), ref.scores.numpy(), ref.labels.numpy()
    for b, s, l in zip(boxes, scores, labels):
        hit = np.nonzero(~used & (rl == l) & (np.abs(rs - s) < 1e-5)
                         & (np.abs(rb - b).max(1) < 1e-3))[0]
        assert len(hit), f'ONNX detection {b} {s} {l} has no PyTorch twin'
        used[hit[0]] = True
    assert used.all()


@pytest.mark.parametrize('max_per_img', [1000, 40])
def test_detector_onnx_matches_pytorch(tmp_path, max_per_img):
    model = _det_model(max_per_img)
    path = export_onnx(model, str(tmp_path / 'ssd.onnx'))  # 128x128 from the test pipeline
    sess = _session(path)
    assert [o.name for o in sess.get_outputs()] == ['boxes', 'scores', 'labels', 'num_dets']
    assert sess.get_inputs()[0].shape[1:] == [3, 128, 128]
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (3, 3, 128, 128), generator=g).float()  # batch 3 (export: 1)
    boxes, scores, labels, num = sess.run(None, {'images': images.numpy()})
    assert boxes.shape == (3, max_per_img, 4) and labels.dtype == np.int64
    refs = _torch_predict(model, images)
    for i, ref in enumerate(refs):
        pred = ref.pred_instances
        n = int(num[i])
        assert n == len(pred.scores) > 0
        if max_per_img == 40:
            assert n == 40  # the per-image cap is applied in the graph
        assert np.all(np.diff(scores[i, :n]) <= 0)
        _match(boxes[i, :n], scores[i, :n], labels[i, :n], pred)
        # padding rows
        assert np.all(scores[i, n:] == 0) and np.all(labels[i, n:] == -1)
        assert np.all(boxes[i, n:] == 0)
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta['densebox_classes']) == list(model.dataset_meta['classes'])
    assert meta['densebox_task'] == 'det'
    assert not model.training  # exporting left the model in eval mode


def test_nms_op_matches_onnx_semantics(tmp_path):
    """The NonMaxSuppression op: torch forward == onnxruntime, threshold and IoU rules."""
    class Wrap(torch.nn.Module):
        def forward(self, boxes, scores):
            return NonMaxSuppression.apply(boxes, scores, 0.5, 0.2)

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + torch.rand(2, 60, 2, generator=g) * 30 + 1], -1)
    scores = torch.rand(2, 3, 60, generator=g)
    path = str(tmp_path / 'nms.onnx')
    torch.onnx.export(Wrap(), (boxes, scores), path, dynamo=False, opset_version=17,
                      input_names=['boxes', 'scores'], output_names=['selected'],
                      dynamic_axes={'boxes': {0: 'n'}, 'scores': {0: 'n'}, 'selected': {0: 'k'}})
    got = _session(path).run(None, {'boxes': boxes.numpy(), 'scores': scores.numpy()})[0]
    ours = Wrap()(boxes, scores).numpy()
    assert {tuple(r) for r in got.tolist()} == {tuple(r) for r in ours.tolist()}
    # reference: plain greedy NMS per (image, class)
    expected = set()
    for n in range(2):
        for c in range(3):
            order = [int(i) for i in torch.argsort(scores[n, c], descending=True)
                     if scores[n, c, i] > 0.2]
            kept = []
            for i in order:
                if all(float(_iou(boxes[n, i], boxes[n, j])) <= 0.5 for j in kept):
                    kept.append(i)
            expected |= {(n, c, i) for i in kept}
    assert {tuple(r) for r in ours.tolist()} == expected


def _iou(a, b):
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    inter = (rb - lt).clamp(min=0).prod()
    area = lambda t: (t[2:] - t[:2]).prod()  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _seg_model():
    torch.manual_seed(0)
    cfg = dict(
        model=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreprocessor', mean=[123.675, 116.28, 103.53],
                                   std=[58.395, 57.12, 57.375], pad_size_divisor=16),
            backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(2, 4),
                          output_stride=16),
            decode_head=dict(type='ASPPHead', in_channels=48, in_index=1, channels=16,
                             dilations=(2,), image_pool=True, num_classes=5,
                             loss_decode=dict(type='CrossEntropyLoss')),
            test_cfg=dict(mode='whole')),
        test_dataloader=dict(dataset=dict(type='ShapesSegDataset', pipeline=[
            dict(type='LoadImageFromFile'), dict(type='PackSegInputs')])))
    with pytest.warns(UserWarning):
        model = densebox.init_model(cfg, device='cpu')
    # Random weights AND BN statistics at He scale: the model's own init (zero BN gammas,
    # a near-zero classifier) gives near-equal logits, whose arg-max would be a coin toss.
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, t in list(model.backbone.named_parameters()) + \
                list(model.backbone.named_buffers()) + list(model.decode_head.named_parameters()) \
                + list(model.decode_head.named_buffers()):
            if not t.dtype.is_floating_point:
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith('bn.weight'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model


def test_segmentor_onnx_matches_pytorch(tmp_path):
    model = _seg_model()
    # 50 x 70 is not a multiple of 16: the graph pads like the data preprocessor and crops
    path = export_onnx(model, str(tmp_path / 'seg.onnx'), input_shape=(50, 70))
    sess = _session(path)
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (2, 3, 50, 70), generator=g).float()
    seg = sess.run(None, {'images': images.numpy()})[0]
    assert seg.shape == (2, 50, 70) and seg.dtype == np.int64
    refs = _torch_predict(model, images, SegDataSample)
    for i, ref in enumerate(refs):
        expected = ref.pred_sem_seg.data[0].numpy()
        logits = ref.seg_logits.data.sort(0, descending=True).values
        clear = (logits[0] - logits[1]).numpy() > 1e-4  # pixels whose arg-max is no near-tie
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(seg[i][clear], expected[clear])
        assert len(np.unique(expected)) > 1
    with pytest.raises(ValueError, match='input_shape'):
        export_onnx(model, str(tmp_path / 'no_shape.onnx'))  # keep-ratio pipeline: no size


def test_export_tool_fixed_batch(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / 'ssd.pth'
    torch.save({'state_dict': _det_model(100).state_dict()}, ckpt)
    out = tmp_path / 'tool.onnx'
    monkeypatch.setattr(sys, 'argv', ['export_onnx.py', QUICKSTART, str(ckpt), '--out', str(out),
                                      '--shape', '160', '160', '--check'])
    runpy.run_path('tools/export_onnx.py', run_name='__main__')
    sess = _session(str(out))
    assert sess.get_inputs()[0].shape == [1, 3, 160, 160]  # no --dynamic-batch
    text = capsys.readouterr().out
    assert 'labels: shape (1, 100), equal: True' in text and 'num_dets' in text

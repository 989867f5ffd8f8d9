"""densebox.deploy.runtime: OnnxDetector / OnnxSegmentor (onnxruntime and OpenVINO) return
what densebox.inference returns with the eager model, in original-image pixels; the
init_model / `densebox infer` backends."""
import json

import numpy as np
import pytest
import torch

import densebox
from densebox.apis import DetResult, SegResult
from densebox.deploy import (AutoBackend, OnnxDetector, OnnxSegmentor, available_backends,
                             export_onnx, runtime_available, wrap_backend)
from test_onnx import QUICKSTART, _det_model, _seg_model

RUNTIMES = [
    'onnxruntime',
    pytest.param('openvino', marks=[pytest.mark.openvino, pytest.mark.skipif(
        not runtime_available('openvino'),
        reason='openvino is not installed (pip install openvino; it is in the [test] extra)')]),
]


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def assert_same_detections(got: DetResult, ref: DetResult):
    """Same detections: each one equals one reference detection (label, score within 1e-5,
    box within 1e-3 px). Rows are matched as sets: scores that differ by float rounding
    only may come out in swapped order."""
    assert got.shape == ref.shape and len(got) == len(ref) > 0
    np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=1e-5)  # both sorted
    used = np.zeros(len(ref), bool)
    for box, score, label in zip(got.boxes, got.scores, got.labels):
        hit = np.flatnonzero(~used & (ref.labels == label) & (np.abs(ref.scores - score) < 1e-5)
                             & (np.abs(ref.boxes - box).max(1) < 1e-3))
        assert len(hit), f'detection {box} {score} {label} has no eager twin'
        used[hit[0]] = True


@pytest.mark.parametrize('runtime', RUNTIMES)
def test_onnx_detector_equals_inference_in_original_pixels(runtime):
    model = _det_model(100)
    images = _images([(128, 128), (240, 180), (90, 300)])  # the pipeline resizes to 128
    ref = densebox.inference(images, model, batch_size=3)
    runner = OnnxDetector.from_model(model, runtime)
    got = densebox.inference(images, runner, batch_size=3)
    for g, r, image in zip(got, ref, images):
        assert_same_detections(g, r)
        assert g.image is not None and g.shape == image.shape[:2]
    # boxes are in the original images: the 300-px-wide image has boxes past x = 128
    assert got[2].boxes[:, 2].max() > 130
    assert list(runner._graphs) == [(128, 128)]  # one graph: the pipeline's fixed size
    assert runner.setup_seconds > 0


@pytest.mark.parametrize('runtime', RUNTIMES)
def test_onnx_detector_from_a_file(tmp_path, runtime):
    model = _det_model(50)
    path = export_onnx(model, str(tmp_path / 'ssd.onnx'))
    runner = OnnxDetector(path, QUICKSTART, runtime=runtime)
    assert runner.dataset_meta['classes'] == model.dataset_meta['classes']
    images = _images([(100, 160)], seed=1)
    assert_same_detections(densebox.inference(images, runner)[0], densebox.inference(images, model)[0])
    with pytest.raises(ValueError, match="densebox_task='det' graph, not one for OnnxSegmentor"):
        OnnxSegmentor(path, QUICKSTART, runtime=runtime)
    other = export_onnx(model, str(tmp_path / 'ssd160.onnx'), input_shape=(160, 160))
    with pytest.raises(ValueError, match='made a 128x128 input but the ONNX file takes 160x160'):
        densebox.inference(images, OnnxDetector(other, QUICKSTART, runtime=runtime))


@pytest.mark.parametrize('runtime', RUNTIMES)
def test_onnx_segmentor_equals_inference(runtime):
    model = _seg_model()
    images = _images([(50, 70), (64, 64)], seed=2)  # no resize: one graph per size
    ref = densebox.inference(images, model)
    runner = OnnxSegmentor.from_model(model, runtime)
    got = densebox.inference(images, runner)
    assert sorted(runner._graphs) == [(50, 70), (64, 64)]
    for g, r in zip(got, ref):
        assert isinstance(g, SegResult) and g.sem_seg.shape == r.sem_seg.shape
        assert (g.sem_seg == r.sem_seg).mean() > 0.999  # near-tied logits may flip
        assert len(np.unique(r.sem_seg)) > 1


def test_onnx_segmentor_file_needs_logits(tmp_path):
    model = _seg_model()
    labels_only = export_onnx(model, str(tmp_path / 'seg.onnx'), input_shape=(50, 70))
    with pytest.raises(ValueError, match="seg_output='logits'"):
        OnnxSegmentor(labels_only, model.cfg)
    logits = export_onnx(model, str(tmp_path / 'seg_logits.onnx'), input_shape=(50, 70),
                         seg_output='logits')
    runner = OnnxSegmentor(logits, model.cfg)
    images = _images([(50, 70)], seed=3)
    ref = densebox.inference(images, model)[0].sem_seg
    assert (densebox.inference(images, runner)[0].sem_seg == ref).mean() > 0.999


@pytest.mark.openvino  # 'auto' times OpenVINO too
def test_init_model_backends(tmp_path):
    ckpt = tmp_path / 'ssd.pth'
    model = _det_model(100)
    torch.save({'state_dict': model.state_dict()}, ckpt)
    images = _images([(128, 128), (150, 200)], seed=4)
    ref = densebox.inference(images, model)
    runner = densebox.init_model(QUICKSTART, str(ckpt), device='cpu', backend='onnxruntime')
    assert isinstance(runner, OnnxDetector) and runner.runtime == 'onnxruntime'
    for g, r in zip(densebox.inference(images, runner), ref):
        assert_same_detections(g, r)

    logged = []
    auto = densebox.init_model(QUICKSTART, str(ckpt), device='cpu', backend='auto')
    assert isinstance(auto, AutoBackend) and auto.chosen is None
    auto._log = logged.append
    auto.repeats = 1
    for g, r in zip(densebox.inference(images, auto, batch_size=2), ref):
        assert_same_detections(g, r)
    assert auto.chosen in available_backends()
    assert set(auto.timings) == set(available_backends())
    assert 'chose' in logged[0] and auto.setup_seconds > 0
    for g, r in zip(densebox.inference(images, auto, batch_size=2), ref):  # the chosen one
        assert_same_detections(g, r)

    with pytest.raises(ValueError, match='backend must be one of'):
        densebox.init_model(QUICKSTART, str(ckpt), device='cpu', backend='tensorrt')
    with pytest.raises(ValueError, match="runs on the CPU"):
        wrap_backend(model, 'onnxruntime', torch.device('cuda'))
    assert wrap_backend(model, 'auto', torch.device('cuda')) is model


def test_infer_cli_backend_writes_the_same_results(tmp_path):
    from PIL import Image

    from densebox.apis.infer_cli import infer_main
    ckpt = tmp_path / 'ssd.pth'
    torch.save({'state_dict': _det_model(100).state_dict()}, ckpt)
    folder = tmp_path / 'images'
    folder.mkdir()
    for i, image in enumerate(_images([(128, 128), (140, 190)], seed=5)):
        Image.fromarray(image).save(folder / f'{i}.png')
    outs = {}
    for backend in ('torch', 'onnxruntime'):
        infer_main([QUICKSTART, str(ckpt), str(folder), '--out-dir', str(tmp_path / backend),
                    '--no-vis', '--device', 'cpu', '--score-thr', '0.0', '--backend', backend])
        outs[backend] = json.loads((tmp_path / backend / 'results.json').read_text())['results']
    for a, b in zip(outs['torch'], outs['onnxruntime']):
        assert a['labels'] == b['labels'] and len(a['labels']) > 0
        np.testing.assert_allclose(a['boxes'], b['boxes'], atol=1e-3)

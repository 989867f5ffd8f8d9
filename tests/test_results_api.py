"""The results API (one display threshold, plot options, indexing, to_json, box layouts),
the lazy public namespace, and streams: generators, video files (a tiny video made with
cv2.VideoWriter) and camera indices through densebox.inference and densebox infer."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import densebox
from densebox.apis import DetResult, inference, init_model
from densebox.apis.infer_cli import infer_main
from densebox.apis.streams import is_stream, video_frames
from densebox.registry import MODELS
from densebox.setup_env import register_all_modules
from densebox.config import REPO_ROOT

register_all_modules()
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart_ssd_shapes.py')


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    """A random quickstart SSD whose class scores are spread (so thresholds cut somewhere)."""
    from mmengine.config import Config
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(QUICKSTART).model).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'cls_convs' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    path = str(tmp_path_factory.mktemp('ckpt') / 'ssd.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path, init_model(QUICKSTART, path, device='cpu')


def _image(seed=0, h=90, w=130):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    cv2.circle(img, (w // 3, h // 2), min(h, w) // 4, [int(v) for v in rng.integers(0, 255, 3)], -1)
    cv2.rectangle(img, (w // 2, h // 4), (w - 5, h - 5), [int(v) for v in rng.integers(0, 255, 3)], -1)
    return img


# ------------------------------------------------------------------------ the namespace
def test_public_api_is_listed_and_imports_stay_lazy():
    for name in ('init_model', 'inference', 'set_default_model', 'DetResult', 'SegResult', 'zoo'):
        assert name in densebox.__all__ and name in dir(densebox), name
    code = ('import sys, densebox; names = dir(densebox); '
            'assert "init_model" in names and "inference" in names; '
            'assert "torch" not in sys.modules and "densebox.apis" not in sys.modules')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=60)
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------- one threshold
def test_one_display_threshold_for_to_dict_plot_and_save(det, tmp_path):
    _, model = det
    rgb = _image(1)
    thr = float(np.quantile(inference(rgb, model).scores, 0.8))  # cuts the detections
    res = inference(rgb, model, score_thr=thr)
    assert res.score_thr == thr and len(res) > 5
    above = res.scores >= thr
    assert 0 < above.sum() < len(res)
    d = res.to_dict()
    assert d['score_thr'] == thr and len(d['scores']) == above.sum()
    assert min(d['scores']) >= thr
    assert len(res.to_dict(score_thr=0)['scores']) == len(res)  # every detection
    assert len(json.loads(res.to_json())['scores']) == above.sum()
    from densebox.visualization import draw_det
    expected = draw_det(rgb, res.boxes, res.labels, res.scores, res.class_names,
                        res.palette, score_thr=thr)
    np.testing.assert_array_equal(res.plot(), expected)
    saved = cv2.cvtColor(cv2.imread(res.save(str(tmp_path / 'a.png'))), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(saved, expected)
    # changing the result's threshold changes all of them together
    res.score_thr = float(res.scores[2])
    assert len(res.to_dict()['scores']) == 3
    np.testing.assert_array_equal(res.plot(), draw_det(rgb, res.boxes[:3], res.labels[:3],
                                                       res.scores[:3], res.class_names,
                                                       res.palette, score_thr=0))
    assert '3 with score >=' in repr(res)


def test_infer_cli_writes_what_to_dict_gives(det, tmp_path):
    path, model = det
    img = _image(2)
    folder = tmp_path / 'imgs'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    thr = float(np.quantile(inference(img, model).scores, 0.8))
    written = infer_main([QUICKSTART, path, str(folder), '--out-dir', str(tmp_path / 'out'),
                          '--score-thr', str(thr), '--device', 'cpu'])
    record = written['results'][0]
    expected = inference(img, model, score_thr=thr).to_dict()
    assert record['scores'] == pytest.approx(expected['scores'], abs=1e-6)
    assert record['score_thr'] == thr and min(record['scores']) >= thr
    assert 0 < len(record['scores']) < len(inference(img, model))


# ------------------------------------------------------------------------ plot options
def test_plot_line_width_font_size_labels_conf(det):
    _, model = det
    rgb = np.full((200, 260, 3), 90, np.uint8)
    res = DetResult([[40, 60, 200, 180]], [0.9], [1], model.dataset_meta['classes'], rgb)

    def changed(img):
        return (img != rgb).any(-1)

    thin, thick = res.plot(), res.plot(line_width=5)
    assert changed(thin)[120, 30:50].sum() == 1 and changed(thick)[120, 30:50].sum() == 5
    small, big = res.plot(font_size=10), res.plot(font_size=24)
    tag_rows = lambda img: changed(img)[:60, 40:200].any(1).sum()  # the tag above the box
    assert tag_rows(big) > tag_rows(small) >= 10
    none = res.plot(labels=False)
    assert tag_rows(none) == 0 and changed(none)[120, 40]  # the box, no tag
    with_conf = changed(res.plot())[:60].any(0).sum()
    without = changed(res.plot(conf=False))[:60].any(0).sum()
    assert without < with_conf  # "square" is narrower than "square 0.90"


# ---------------------------------------------------------------- container behaviour
def test_indexing_slicing_iteration_and_box_layouts(det):
    _, model = det
    res = inference(_image(3, 100, 160), model)
    n = len(res)
    assert n == len(res.boxes) > 3
    first = res[0]
    assert isinstance(first, DetResult) and len(first) == 1
    np.testing.assert_array_equal(first.boxes[0], res.boxes[0])
    assert first.score_thr == res.score_thr and first.image is res.image
    np.testing.assert_array_equal(res[-1].scores, res.scores[-1:])
    np.testing.assert_array_equal(res[1:3].scores, res.scores[1:3])
    mask = res.labels == res.labels[0]
    assert len(res[mask]) == mask.sum() and (res[mask].labels == res.labels[0]).all()
    np.testing.assert_array_equal(res[[2, 0]].scores, res.scores[[0, 2]])  # kept by score
    assert [float(r.scores[0]) for r in res] == res.scores.tolist()
    with pytest.raises(IndexError, match=f'holds {n}'):
        res[n]
    with pytest.raises(IndexError, match='boolean index'):
        res[np.ones(n + 1, bool)]
    with pytest.raises(TypeError, match='ints, slices'):
        res['a']

    b = res.boxes.astype(np.float64)
    h, w = res.shape
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                       b[:, 3] - b[:, 1]], 1)
    np.testing.assert_allclose(res.xywh, centre, rtol=1e-6)
    np.testing.assert_allclose(res.ltwh, np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1),
                               rtol=1e-6)
    np.testing.assert_allclose(res.xyxyn, b / [w, h, w, h], rtol=1e-6)
    np.testing.assert_allclose(res.xywhn, centre / [w, h, w, h], rtol=1e-6)
    d = res.to_dict(score_thr=0, box_format='ltwh', normalized=True)
    np.testing.assert_allclose(d['boxes'], res.ltwh / [w, h, w, h], rtol=1e-6)
    with pytest.raises(ValueError, match='box_format'):
        res.to_dict(box_format='cxcy')


def test_to_json_round_trip_and_file(det, tmp_path):
    _, model = det
    res = inference(_image(4), model)
    text = res.to_json(str(tmp_path / 'r.json'), indent=1, score_thr=0)
    assert json.loads(text) == res.to_dict(score_thr=0)
    with open(tmp_path / 'r.json') as f:
        assert json.load(f) == json.loads(text)


# ------------------------------------------------------------------------------ streams
def test_generator_input_streams_results(det):
    _, model = det
    frames = [_image(k) for k in range(5)]
    gen = (f for f in frames)
    assert is_stream(gen) and not is_stream(frames) and not is_stream(frames[0])
    out = inference(gen, model, batch_size=2)
    assert hasattr(out, '__next__')  # lazy: nothing ran yet
    results = list(out)
    expected = inference(frames, model, batch_size=2)  # the same batches
    assert [r.frame for r in results] == [0, 1, 2, 3, 4]
    for got, ref in zip(results, expected):
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)
    assert results[0].to_dict()['frame'] == 0


def _write_video(path, frames, fps=10):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_file_round_trip_through_inference_and_infer(det, tmp_path):
    path, model = det
    frames = [_image(k, 96, 128) for k in range(6)]
    video = tmp_path / 'clip.avi'
    _write_video(video, frames)
    decoded = list(video_frames(str(video)))  # what the model sees (MJPG is lossy)
    assert len(decoded) == 6 and decoded[0].shape == (96, 128, 3)
    assert np.abs(decoded[0].astype(int) - frames[0]).mean() < 8  # RGB, not BGR

    results = list(inference(str(video), model, batch_size=4))
    assert [r.frame for r in results] == list(range(6))
    assert all(r.path == str(video) for r in results)
    for got, ref in zip(results, inference(decoded, model, batch_size=4)):
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-3)

    out = tmp_path / 'out'
    written = infer_main([QUICKSTART, path, str(video), '--out-dir', str(out), '--device',
                          'cpu', '--max-frames', '5', '--batch-size', '2'])
    records = written['results']
    assert [r['frame'] for r in records] == [0, 1, 2, 3, 4]
    with open(out / 'results.json') as f:
        assert json.load(f)['results'] == records
    for record, ref in zip(records, inference(decoded[:5], model, batch_size=2)):
        assert record['scores'] == pytest.approx(ref.to_dict()['scores'], abs=1e-5)
    annotated = cv2.VideoCapture(str(out / 'vis' / 'clip.mp4'))
    count, first = 0, None
    while True:
        ok, frame = annotated.read()
        if not ok:
            break
        first = frame if first is None else first
        count += 1
    annotated.release()
    assert count == 5 and first.shape == (96, 128, 3)
    assert np.abs(first[..., ::-1].astype(int) - decoded[0]).mean() > 1  # boxes drawn on it


def test_missing_video_and_camera_errors(det, tmp_path):
    _, model = det
    with pytest.raises(FileNotFoundError, match='no_such.mp4'):
        inference(str(tmp_path / 'no_such.mp4'), model)  # at the call, not the first frame
    with pytest.raises(OSError, match='camera 97'):
        inference(97, model)
    assert is_stream(0) and not is_stream(True)

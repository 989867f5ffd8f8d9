"""The application API: init_model, inference on files / arrays / PIL / batches, the default
model, result objects, the infer command and tools/browse_dataset.py."""
import json
import os.path as osp
import runpy
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import densebox
from densebox.apis import DetResult, SegResult, inference, init_model, set_default_model
from densebox.apis.infer_cli import infer_main
from densebox.datasets.shapes import SHAPES_CLASSES, generate_shapes
from densebox.registry import MODELS
from densebox.setup_env import register_all_modules

register_all_modules()
QUICKSTART = 'configs/quickstart_ssd_shapes.py'
SIZE = 128  # the quickstart's input side (input_size in its config)
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _spread_scores(model):
    """Random heads give near-uniform softmax scores; widen them so that boxes and ranks
    are far from ties (a wrong mapping then shows instead of hiding in noise)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'cls_convs' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope='module')
def det_ckpt(tmp_path_factory):
    """A checkpoint of a randomly initialised quickstart SSD, with custom class names in its
    meta (so tests can tell checkpoint meta from config meta)."""
    from mmengine.config import Config
    torch.manual_seed(0)
    model = _spread_scores(MODELS.build(Config.fromfile(QUICKSTART).model)).eval()
    path = tmp_path_factory.mktemp('ckpt') / 'ssd_random.pth'
    classes = ('c0', 'c1', 'c2', 'c3', 'c4')
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': classes}}}, path)
    return str(path), model.state_dict(), classes


@pytest.fixture(scope='module')
def det_model(det_ckpt):
    return init_model(QUICKSTART, det_ckpt[0], device='cpu')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes(root, num_train=3, num_val=2, img_size=(96, 128))
    return root


def _image(seed=0, h=90, w=130):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    cv2.circle(img, (w // 3, h // 2), min(h, w) // 4, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    cv2.rectangle(img, (w // 2, h // 4), (w - 5, h - 5), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def _reference_det(model, rgb):
    """The quickstart SSD written out by hand: cv2 bilinear resize to SIZE x SIZE, normalise,
    network, decode + NMS in network pixels, then divide by the resize factors."""
    h, w = rgb.shape[:2]
    resized = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(((resized - MEAN) / STD).transpose(2, 0, 1)).float()[None]
    head = model.bbox_head
    with torch.no_grad():
        feats = model.extract_feat(x)
        cls, reg = head(feats)
        meta = dict(img_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
                    scale_factor=(SIZE / w, SIZE / h))
        pred = head.predict_by_outputs(cls, reg, head.anchors(feats), [meta])[0]
    order = torch.argsort(pred.scores, descending=True)
    return (pred.bboxes[order].numpy(), pred.scores[order].numpy(), pred.labels[order].numpy())


# ------------------------------------------------------------------------------ init_model
def test_init_model_weights_meta_and_config(det_ckpt, det_model):
    path, state, classes = det_ckpt
    assert not det_model.training
    assert next(det_model.parameters()).device.type == 'cpu'
    assert det_model.cfg.model.type == 'SingleStageDetector'
    assert det_model.dataset_meta['classes'] == classes          # from the checkpoint meta
    assert len(det_model.dataset_meta['palette']) == len(classes)
    for key, value in det_model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_init_model_cpu_fast_paths(det_ckpt, det_model):
    """On the CPU the eligible 3x3 convs become AutotunedConv2d and the 2x2 max-pools
    StridedMaxPool2d (same weights), unless cpu_fast_paths=False."""
    from densebox.ops.conv import AutotunedConv2d, is_eligible, nnpack_available
    from densebox.ops.pool import StridedMaxPool2d
    tuned = [m for m in det_model.modules() if isinstance(m, AutotunedConv2d)]
    eligible = [m for m in det_model.modules() if is_eligible(m)]
    assert len(tuned) == (len(eligible) if nnpack_available() else 0) and len(eligible) > 10
    assert sum(isinstance(m, StridedMaxPool2d) for m in det_model.modules()) == 4  # VGG pools 1-4
    plain = init_model(QUICKSTART, det_ckpt[0], device='cpu', cpu_fast_paths=False)
    assert not any(isinstance(m, (AutotunedConv2d, StridedMaxPool2d)) for m in plain.modules())


def test_init_model_meta_from_config_and_bare_state_dict(det_ckpt, tmp_path):
    bare = tmp_path / 'bare.pth'
    torch.save({f'module.{k}': v for k, v in det_ckpt[1].items()}, bare)  # DataParallel prefix
    model = init_model(QUICKSTART, str(bare), device='auto')
    assert model.dataset_meta['classes'] == tuple(SHAPES_CLASSES)  # from the config's data set
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert next(model.parameters()).device.type == expected


def test_init_model_errors(det_ckpt, tmp_path):
    with pytest.raises(FileNotFoundError, match='neither a config file nor a model-zoo name'):
        init_model('configs/no_such_config.py')
    wrong = tmp_path / 'wrong.pth'
    state = dict(det_ckpt[1])
    state.pop('bbox_head.cls_convs.0.weight')
    state['extra.weight'] = torch.zeros(1)
    torch.save({'state_dict': state}, wrong)
    with pytest.raises(RuntimeError, match=r'missing keys: bbox_head\.cls_convs\.0\.weight.*'
                                           r'unexpected keys: extra\.weight'):
        init_model(QUICKSTART, str(wrong), device='cpu')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        init_model(QUICKSTART, str(tmp_path / 'missing.pth'), device='cpu')
    with pytest.warns(UserWarning, match='random weights'):
        init_model(QUICKSTART, device='cpu')


# ------------------------------------------------------------------------------- inference
def test_inference_matches_hand_written_reference_on_all_input_kinds(det_model, tmp_path):
    rgb = _image(0)
    path = str(tmp_path / 'img.png')  # lossless, so the file decodes to `rgb` exactly
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    ref_boxes, ref_scores, ref_labels = _reference_det(det_model, rgb)
    assert len(ref_scores) > 5

    results = {
        'path': inference(path, det_model),
        'rgb': inference(rgb, det_model),
        'bgr': inference(np.ascontiguousarray(rgb[:, :, ::-1]), det_model, color_order='bgr'),
        'pil': inference(Image.fromarray(rgb), det_model),
        'rgba': inference(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), det_model),
    }
    def canonical(boxes, scores, labels):
        # Random weights give near-equal scores whose order is arbitrary: compare the
        # detections as a set, ordered by (rounded score, label, box).
        order = np.lexsort((*np.round(boxes, 2).T[::-1], labels, -np.round(scores, 5)))
        return boxes[order], scores[order], labels[order]

    ref_boxes, ref_scores, ref_labels = canonical(ref_boxes, ref_scores, ref_labels)
    for name, res in results.items():
        assert isinstance(res, DetResult), name
        assert res.shape == rgb.shape[:2] and res.class_names == det_model.dataset_meta['classes']
        boxes, scores, labels = canonical(res.boxes, res.scores, res.labels)
        np.testing.assert_allclose(boxes, ref_boxes, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(labels, ref_labels, err_msg=name)
        np.testing.assert_array_equal(res.image, rgb, err_msg=name)
    assert results['path'].path == path and results['rgb'].path is None
    # boxes are in input-image pixels: clipped to the 130 x 90 image, not to the network input
    assert results['rgb'].boxes[:, 0::2].max() <= 130 + 1e-3
    assert results['rgb'].boxes[:, 1::2].max() <= 90 + 1e-3
    assert results['rgb'].boxes.dtype == np.float32 and results['rgb'].labels.dtype == np.int64
    # BGR given as RGB is a different image: the colour order is not guessed
    swapped = inference(np.ascontiguousarray(rgb[:, :, ::-1]), det_model)
    assert not np.allclose(swapped.scores[:10], ref_scores[:10], atol=1e-4)


def test_inference_batches_equal_single_images(det_model):
    images = [_image(1, 90, 130), _image(2, 160, 100), _image(3, 64, 64)]
    singles = [inference(img, det_model) for img in images]
    batched = inference(images, det_model, batch_size=2)
    assert isinstance(batched, list) and len(batched) == 3
    for one, many in zip(singles, batched):
        assert one.shape == many.shape
        np.testing.assert_allclose(many.boxes, one.boxes, atol=1e-3)
        np.testing.assert_allclose(many.scores, one.scores, atol=1e-5)
        np.testing.assert_array_equal(many.labels, one.labels)
    frames = np.stack([images[0], images[0]])  # (N, H, W, 3): N frames
    res = inference(frames, det_model, batch_size=2)
    assert len(res) == 2
    np.testing.assert_allclose(res[1].boxes, singles[0].boxes, atol=1e-3)
    assert inference([images[2]], det_model)[0].shape == (64, 64)  # a list returns a list


def test_inference_rejects_bad_inputs(det_model):
    with pytest.raises(TypeError, match='uint8'):
        inference(np.zeros((20, 20, 3), np.float32), det_model)
    with pytest.raises(ValueError, match="color_order must be 'rgb' or 'bgr'"):
        inference(_image(), det_model, color_order='rbg')
    with pytest.raises(TypeError, match=r'input 1: expected an image path'):
        inference([_image(), 3.5], det_model)
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        inference(np.zeros((20, 20, 2), np.uint8), det_model)
    with pytest.raises(FileNotFoundError, match='no_such.jpg'):
        inference('no_such.jpg', det_model)
    with pytest.raises(ValueError, match='batch_size'):
        inference(_image(), det_model, batch_size=0)


def test_default_model_setting_env_and_error(det_model, det_ckpt, monkeypatch):
    monkeypatch.delenv('DENSEBOX_MODEL', raising=False)
    set_default_model(None)
    with pytest.raises(RuntimeError, match=r'set_default_model.*DENSEBOX_MODEL'):
        densebox.inference(_image())
    try:
        set_default_model(det_model)
        res = densebox.inference(_image())
        np.testing.assert_allclose(res.scores, inference(_image(), det_model).scores)
        set_default_model(None)
        monkeypatch.setenv('DENSEBOX_MODEL', f'{QUICKSTART}:{det_ckpt[0]}')
        from_env = densebox.inference(_image())
        assert from_env.class_names == det_ckpt[2]  # the checkpoint was loaded
        np.testing.assert_allclose(from_env.scores, res.scores, atol=1e-6)
        assert densebox.apis.get_default_model() is densebox.apis.get_default_model()  # kept
        monkeypatch.setenv('DENSEBOX_MODEL', 'no_such_model_name')
        with pytest.raises(FileNotFoundError, match='no_such_model_name'):
            densebox.inference(_image())
    finally:
        set_default_model(None)


# --------------------------------------------------------------------------- result objects
def test_det_result_dict_plot_save(det_model, tmp_path):
    rgb = _image(4)
    res = inference(rgb, det_model, score_thr=0.2)
    assert np.all(np.diff(res.scores) <= 0)  # sorted
    d = res.to_dict(score_thr=0)  # every detection; the default is the result's 0.2
    assert json.loads(json.dumps(d)) == d
    assert (d['height'], d['width']) == rgb.shape[:2]
    assert len(d['boxes']) == len(d['scores']) == len(d['label_names']) == len(res)
    assert d['label_names'][0] == res.class_names[res.labels[0]]
    high = res.to_dict(score_thr=float(res.scores[2]))
    assert len(high['scores']) == 3 and min(high['scores']) >= res.scores[2]
    assert len(res.filter(float(res.scores[2]))) == 3

    drawn = res.plot()
    assert drawn.shape == rgb.shape and drawn.dtype == np.uint8
    assert (drawn != rgb).any(axis=2).sum() > 50   # boxes and tags are drawn
    nothing = res.plot(score_thr=1.1)
    np.testing.assert_array_equal(nothing, rgb)    # above every score: the image unchanged
    path = res.save(str(tmp_path / 'out' / 'det.png'))
    saved = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(saved, drawn)
    no_image = inference(rgb, det_model, keep_image=False)
    with pytest.raises(ValueError, match='holds no image'):
        no_image.plot()
    assert no_image.plot(image=rgb).shape == rgb.shape


def _seg_config(data_root):
    """A tiny EncoderDecoder (MobileNetV2 x0.5 + FCN head) on the shapes classes."""
    return dict(
        default_scope='densebox',
        model=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreprocessor', mean=MEAN.tolist(), std=STD.tolist(),
                                   pad_size_divisor=16),
            backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(2,)),
            decode_head=dict(type='FCNHead', in_channels=16, channels=16, num_convs=1,
                             num_classes=6, loss_decode=dict(type='CrossEntropyLoss')),
            test_cfg=dict(mode='whole')),
        test_dataloader=dict(
            batch_size=1,
            dataset=dict(type='ShapesSegDataset', data_root=data_root,
                         data_prefix=dict(img_path='images/val', seg_map_path='masks/val'),
                         pipeline=[dict(type='LoadImageFromFile'),
                                   dict(type='Resize', scale=(64, 48), keep_ratio=True),
                                   dict(type='LoadAnnotations', with_bbox=False,
                                        with_label=False, with_seg=True),
                                   dict(type='PackSegInputs')])))


def test_seg_inference_result_and_reference(shapes, tmp_path):
    from densebox.datasets.shapes_seg import SHAPES_SEG_CLASSES
    from densebox.models.utils import resize
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='random weights'):
        model = init_model(_seg_config(shapes), device='cpu')
    assert model.dataset_meta['classes'] == SHAPES_SEG_CLASSES
    rgb = _image(5, 90, 130)
    res = inference(rgb, model)
    assert isinstance(res, SegResult) and res.sem_seg.shape == (90, 130)
    assert res.sem_seg.dtype == np.int64

    # reference: keep-ratio resize to fit (64, 48) -> 64 x 44, pad to 64 x 48, network,
    # crop the padding, bilinear resize of the logits to 90 x 130, arg-max
    resized = cv2.resize(rgb, (64, 44), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(((resized - MEAN) / STD).transpose(2, 0, 1)).float()[None]
    x = torch.nn.functional.pad(x, (0, 0, 0, 4))
    with torch.no_grad():
        logits = model.encode_decode(x)[:, :, :44, :64]
        logits = resize(logits, (90, 130), 'bilinear', model.align_corners)
    np.testing.assert_array_equal(res.sem_seg, logits.argmax(1)[0].numpy())

    batch = inference([rgb, _image(6, 50, 70)], model, batch_size=2)  # padded together
    np.testing.assert_array_equal(batch[0].sem_seg, res.sem_seg)
    d = res.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert np.array_equal(np.array(d['sem_seg']), res.sem_seg)
    assert sum(d['class_pixels'].values()) == 90 * 130
    assert 'sem_seg' not in res.to_dict(with_map=False)
    drawn = res.plot(alpha=0.5, legend='inside')
    assert drawn.shape == rgb.shape and (drawn != rgb).any()
    beside = res.plot(alpha=0.5)  # the default legend sits below this wide image
    assert beside.shape[1] == 130 and beside.shape[0] > 90
    np.testing.assert_array_equal(beside[:90], res.plot(alpha=0.5, legend=False))
    np.testing.assert_array_equal(res.plot(alpha=0.0, legend=False), rgb)
    saved = cv2.imread(res.save(str(tmp_path / 'seg.png'), legend=False))
    assert saved.shape == rgb.shape


# ------------------------------------------------------------------------------ infer CLI
def test_infer_cli_on_a_folder(det_ckpt, det_model, tmp_path):
    folder = tmp_path / 'images'
    (folder / 'sub').mkdir(parents=True)
    a, b = _image(7, 90, 130), _image(8, 100, 80)
    cv2.imwrite(str(folder / 'a.png'), cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / 'sub' / 'b.png'), cv2.cvtColor(b, cv2.COLOR_RGB2BGR))
    (folder / 'notes.txt').write_text('not an image')
    out = tmp_path / 'out'
    from densebox.cli import main
    main(['infer', QUICKSTART, det_ckpt[0], str(folder), '--out-dir', str(out),
          '--batch-size', '2', '--score-thr', '0.25', '--device', 'cpu'])
    with open(out / 'results.json') as f:
        written = json.load(f)
    assert written['classes'] == list(det_ckpt[2])
    records = {osp.basename(r['path']): r for r in written['results']}
    assert sorted(records) == ['a.png', 'b.png']
    for name, img in (('a.png', a), ('b.png', b)):
        ref = inference(img, det_model).filter(0.25)
        rec = records[name]
        assert (rec['height'], rec['width']) == img.shape[:2]
        assert min(rec['scores']) >= 0.25
        np.testing.assert_allclose(rec['boxes'], ref.boxes, atol=1e-3)
        np.testing.assert_array_equal(rec['labels'], ref.labels)
        vis = cv2.imread(str(out / rec['vis']))
        assert vis.shape == img.shape
    assert (out / 'vis' / 'sub__b.png').is_file()  # sub-folders kept apart in the names


def test_tools_infer_script_and_missing_input(det_ckpt, tmp_path, monkeypatch):
    img = tmp_path / 'one.png'
    cv2.imwrite(str(img), _image(9))
    monkeypatch.setattr(sys, 'argv', ['infer.py', QUICKSTART, det_ckpt[0], str(img),
                                      '--out-dir', str(tmp_path / 'o'), '--no-vis'])
    runpy.run_path('tools/infer.py', run_name='__main__')
    with open(tmp_path / 'o' / 'results.json') as f:
        assert len(json.load(f)['results']) == 1
    assert not (tmp_path / 'o' / 'vis').exists()
    with pytest.raises(FileNotFoundError, match='no images'):
        infer_main([QUICKSTART, det_ckpt[0], str(tmp_path / 'o'), '--out-dir',
                    str(tmp_path / 'o2')])  # a folder holding only results.json


# --------------------------------------------------------------------------- browse dataset
def test_browse_dataset_draws_transformed_samples(shapes, tmp_path):
    browse = runpy.run_path('tools/browse_dataset.py')['browse']
    from mmengine.config import Config
    cfg = Config.fromfile(QUICKSTART)
    cfg.train_dataloader.dataset.data_root = shapes + '/'
    written = browse(cfg, str(tmp_path / 'browse'), num=2, phase='train', seed=0)
    assert len(written) == 2 and all(osp.isfile(p) for p in written)
    # the drawing is the packed (augmented, resized to SIZE x SIZE) image plus its boxes
    from densebox.registry import DATASETS
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(0)
    torch.manual_seed(0)
    import random
    random.seed(0)
    packed = dataset[0]
    raw = packed['inputs'].permute(1, 2, 0).numpy()
    drawn = cv2.cvtColor(cv2.imread(written[0]), cv2.COLOR_BGR2RGB)
    assert drawn.shape == raw.shape == (SIZE, SIZE, 3)
    changed = (drawn != raw).any(axis=2)
    boxes = packed['data_samples'].gt_instances.bboxes.numpy()
    assert len(boxes) > 0 and changed.sum() > 20
    x1, y1, x2, y2 = np.round(boxes[0]).astype(int).clip(0, 159)
    assert changed[y1, x1:x2 + 1].mean() > 0.5 or changed[y2, x1:x2 + 1].mean() > 0.5


def test_infer_cli_segmentation_writes_masks(shapes, tmp_path):
    from mmengine.config import Config
    cfg_path = str(tmp_path / 'tiny_seg.py')
    Config(_seg_config(shapes)).dump(cfg_path)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='random weights'):
        model = init_model(cfg_path, device='cpu')
    ckpt = str(tmp_path / 'seg.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    img = _image(10, 90, 130)
    folder = tmp_path / 'imgs'
    folder.mkdir()
    cv2.imwrite(str(folder / 'x.png'), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    written = infer_main([cfg_path, ckpt, str(folder), '--out-dir', str(tmp_path / 'out'),
                          '--device', 'cpu'])
    rec = written['results'][0]
    assert set(rec) >= {'path', 'height', 'width', 'class_pixels', 'mask', 'vis'}
    mask = np.asarray(Image.open(tmp_path / 'out' / rec['mask']))
    np.testing.assert_array_equal(mask, inference(img, model).sem_seg)
    assert sum(rec['class_pixels'].values()) == 90 * 130

"""tools/test.py's files hold the model's predictions: the ``--out`` dump of a detector and
the ``--show-dir`` drawings of a detector and a segmenter are compared with what the
inference API (``init_model`` + ``inference``, another path through the same weights)
predicts for each image; ``--amp`` on a bfloat16 CPU really runs the model under bfloat16
autocast. (COCO results and PNG label maps as other tools read them: test_test_outputs.py.)"""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from densebox.cli import test_main as run_test
from densebox.registry import MODELS
from densebox.config import REPO_ROOT
from densebox.visualization import draw_det, draw_seg, side_by_side
from test_test_outputs import QUICKSTART, SEG_CONFIG, _det_options, det_ckpt, shapes  # noqa: F401

SCORE_THR = 0.2


def _image_path(shapes, name):
    path = osp.join(shapes, 'images', 'val', name)
    return path if osp.isfile(path) else osp.splitext(path)[0] + '.png'


def _read(path):
    return np.asarray(Image.open(path).convert('RGB')).astype(np.int64)


def _difference(saved_path, expected, tmp_path):
    """Mean absolute difference between a saved drawing and the ``expected`` RGB array
    written the same way (same format and encoder: equal drawings give equal pixels)."""
    from densebox.visualization import save_image
    path = save_image(str(tmp_path / ('expected' + osp.splitext(str(saved_path))[1])), expected)
    saved, written = _read(saved_path), _read(path)
    assert saved.shape == written.shape
    return float(np.abs(saved - written).mean())


def test_det_out_and_show_dir_hold_the_predictions(shapes, det_ckpt, tmp_path):  # noqa: F811
    from pycocotools.coco import COCO
    from densebox.apis import inference, init_model
    dump, drawn = tmp_path / 'dump.json', tmp_path / 'drawn'
    run_test([QUICKSTART, det_ckpt, '--work-dir', str(tmp_path / 'wd'), '--out', str(dump),
              '--out-format', 'densebox', '--show-dir', str(drawn), '--score-thr',
              str(SCORE_THR), '--no-progress', *_det_options(shapes)])
    with open(dump) as f:
        predictions = {osp.basename(p['img_path']): p for p in json.load(f)['predictions']}
    net = init_model(QUICKSTART, det_ckpt, device='cpu', cpu_fast_paths=False)
    gt = COCO(osp.join(shapes, 'annotations', 'instances_val.json'))
    classes, palette = net.dataset_meta['classes'], net.dataset_meta['palette']
    assert sorted(os.listdir(drawn)) == sorted(predictions) and len(predictions) == 4
    shown = 0
    for name, dumped in predictions.items():
        result = inference(_image_path(shapes, name), net)
        assert len(result) == len(dumped['scores']) > 0
        np.testing.assert_allclose(np.array(dumped['bboxes']), result.boxes, atol=1e-3)
        np.testing.assert_allclose(np.array(dumped['scores']), result.scores, atol=1e-5)
        np.testing.assert_array_equal(np.array(dumped['labels']), result.labels)

        # the drawing: ground truth | the API's predictions above the threshold
        img = result.image
        image_id = next(i for i, info in gt.imgs.items() if info['file_name'].endswith(name))
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
        gt_boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)])
        cat_index = {c: k for k, c in enumerate(sorted(gt.getCatIds()))}
        gt_labels = np.array([cat_index[a['category_id']] for a in anns])
        gt_panel = draw_det(img, gt_boxes, gt_labels, class_names=classes, palette=palette)

        def picture(keep):
            pred = draw_det(img, result.boxes[keep], result.labels[keep], result.scores[keep],
                            class_names=classes, palette=palette, score_thr=SCORE_THR)
            return side_by_side([gt_panel, pred], ['ground truth', 'prediction'])

        above = result.scores >= SCORE_THR
        shown += int(above.sum())
        right = _difference(drawn / name, picture(slice(None)), tmp_path)
        assert right < 0.05  # the same picture (0 here)
        if above.any():  # without the best box it is another picture
            assert _difference(drawn / name, picture(slice(1, None)), tmp_path) > 0.5
    assert shown >= 4  # boxes were drawn at all


def test_seg_show_dir_holds_the_predictions(shapes, tmp_path):  # noqa: F811
    from densebox.apis import inference, init_model
    config = tmp_path / 'tiny_seg.py'
    config.write_text(SEG_CONFIG.format(
        base=osp.join(REPO_ROOT, 'configs', '_base_', 'datasets', 'shapes_seg.py'),
        runtime=osp.join(REPO_ROOT, 'configs', '_base_', 'default_runtime.py'), root=shapes))
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    with torch.no_grad():
        for p in model.decode_head.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    ckpt = str(tmp_path / 'seg.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    drawn = tmp_path / 'drawn'
    run_test([str(config), ckpt, '--work-dir', str(tmp_path / 'wd'), '--show-dir', str(drawn),
              '--no-progress'])
    net = init_model(str(config), ckpt, device='cpu', cpu_fast_paths=False)
    classes, palette = net.dataset_meta['classes'], net.dataset_meta['palette']
    names = sorted(os.listdir(drawn))
    assert len(names) == 4
    for name in names:
        result = inference(_image_path(shapes, name), net)
        assert len(np.unique(result.sem_seg)) >= 2
        mask = np.asarray(Image.open(osp.join(shapes, 'masks', 'val',
                                              osp.splitext(name)[0] + '.png'))).astype(np.int64)

        def picture(pred):
            return side_by_side([draw_seg(result.image, mask, classes, palette, legend='inside'),
                                 draw_seg(result.image, pred, classes, palette, legend='inside')],
                                ['ground truth', 'prediction'])

        right = _difference(drawn / name, picture(result.sem_seg), tmp_path)
        assert right < 0.05  # the same picture (0 here)
        # the same map one class over is a clearly different picture
        wrong = _difference(drawn / name, picture((result.sem_seg + 1) % len(classes)), tmp_path)
        assert wrong > 0.5


def test_amp_on_a_bfloat16_cpu_runs_the_model_under_bfloat16_autocast(  # noqa: F811
        shapes, det_ckpt, tmp_path, monkeypatch):
    import densebox.tools_common as tc
    from densebox.models.det_heads import SSDHead
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    if not tc.cpu_supports_bf16():
        with pytest.raises(SystemExit, match='no native bfloat16'):
            run_test([QUICKSTART, det_ckpt, '--amp', *_det_options(shapes)])
        return
    seen = []
    forward = SSDHead.forward

    def recording(self, feats):
        out = forward(self, feats)
        seen.append((torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'),
                     out[0].dtype))
        return out

    monkeypatch.setattr(SSDHead, 'forward', recording)
    plain = run_test([QUICKSTART, det_ckpt, '--work-dir', str(tmp_path / 'a'), '--no-progress',
                      *_det_options(shapes)])
    assert seen and all(s == (False, torch.bfloat16, torch.float32) for s in seen)
    seen.clear()
    amp = run_test([QUICKSTART, det_ckpt, '--work-dir', str(tmp_path / 'b'), '--amp',
                    '--no-progress', *_det_options(shapes)])
    assert len(seen) == 2 and all(s == (True, torch.bfloat16, torch.bfloat16) for s in seen)
    assert set(amp) == set(plain)

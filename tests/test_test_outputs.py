"""tools/test.py outputs as other tools read them: COCO results read back by pycocotools'
loadRes (run from outside the checkout, with a progress bar), PNG label maps, the analysis
plots, --show-dir with ground truth beside the prediction, --tta and --amp through the
Runner."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from densebox.cli import test_main as run_test
from densebox.datasets.shapes import SHAPES_CLASSES, generate_shapes
from densebox.registry import MODELS
from densebox.setup_env import register_all_modules
from densebox.config import REPO_ROOT

register_all_modules()
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart_ssd_shapes.py')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes(root, num_train=2, num_val=4, img_size=(96, 112), seed=7)
    return root


@pytest.fixture(scope='module')
def det_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(QUICKSTART).model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # spread the random class scores (ranks far from ties)
        for name, p in model.named_parameters():
            if 'cls_convs' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    path = str(tmp_path_factory.mktemp('ckpt') / 'ssd.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _det_options(shapes):
    return ['--cfg-options', f'test_dataloader.dataset.data_root={shapes}/',
            f'test_evaluator.ann_file={shapes}/annotations/instances_val.json',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            'test_dataloader.batch_size=2']


def test_coco_results_read_by_loadres_from_outside_the_checkout(shapes, det_ckpt, tmp_path):
    from pycocotools.coco import COCO
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)  # tools/test.py finds its checkout itself
    out = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'),
         'configs/quickstart_ssd_shapes.py', det_ckpt, '--work-dir', 'wd', '--out', 'preds.json',
         '--plots', '--show-dir', str(tmp_path / 'drawn'), *_det_options(shapes)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'test: 100%' in out.stderr and '2/2' in out.stderr  # the progress bar

    gt = COCO(osp.join(shapes, 'annotations', 'instances_val.json'))
    with open(tmp_path / 'preds.json') as f:
        entries = json.load(f)
    dt = gt.loadRes(str(tmp_path / 'preds.json'))
    assert len(dt.anns) == len(entries) > 0
    assert set(dt.getImgIds()) <= set(gt.getImgIds())
    assert {e['category_id'] for e in entries} <= set(gt.getCatIds())

    # the same detections as densebox's own dump, in COCO's layout and ids
    dump = str(tmp_path / 'dump.json')
    run_test([QUICKSTART, det_ckpt, '--work-dir', str(tmp_path / 'wd2'), '--out', dump,
               '--out-format', 'densebox', '--no-progress', *_det_options(shapes)])
    with open(dump) as f:
        rich = json.load(f)
    name_to_cat = {c['name']: c['id'] for c in gt.loadCats(gt.getCatIds())}
    cat_ids = [name_to_cat[n] for n in rich['classes']]
    expected = []
    for p in rich['predictions']:
        for (x1, y1, x2, y2), s, lab in zip(p['bboxes'], p['scores'], p['labels']):
            box = [round(v, 3) for v in (x1, y1, x2 - x1, y2 - y1)]  # as written
            expected.append((p['img_id'], cat_ids[lab], *box, round(s, 5)))
    got = [(e['image_id'], e['category_id'], *e['bbox'], e['score']) for e in entries]
    assert len(got) == len(expected)
    np.testing.assert_allclose(np.array(sorted(got)), np.array(sorted(expected)), atol=2e-3)

    # --plots: the three charts and their numbers; --show-dir: ground truth | prediction
    plots = tmp_path / 'wd' / 'plots'
    for name in ('pr_curves.png', 'pr_curves_per_class.png', 'confusion_matrix.png'):
        assert (plots / name).stat().st_size > 5000, name
    with open(plots / 'analysis.json') as f:
        analysis = json.load(f)
    assert analysis['classes'] == list(SHAPES_CLASSES)
    matrix = np.array(analysis['confusion_matrix'])
    assert matrix.shape == (6, 6)
    num_gt = len(gt.getAnnIds())
    assert matrix[:5].sum() == num_gt  # every ground-truth box lands in its row once
    drawn = sorted(os.listdir(tmp_path / 'drawn'))
    assert len(drawn) == 4
    img = np.asarray(Image.open(tmp_path / 'drawn' / drawn[0]))
    assert img.shape[1] == 2 * 112 + 4 and img.shape[0] > 96  # two panels and their titles


def test_det_tta_and_bf16_amp_through_the_runner(shapes, det_ckpt, tmp_path):
    import densebox.tools_common as tc
    if not tc.cpu_supports_bf16() and not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='--amp'):
            run_test([QUICKSTART, det_ckpt, '--amp', *_det_options(shapes)])
        return
    plain = str(tmp_path / 'plain.json')
    tta = str(tmp_path / 'tta.json')
    run_test([QUICKSTART, det_ckpt, '--work-dir', str(tmp_path / 'a'), '--out', plain,
               '--no-progress', *_det_options(shapes)])
    metrics = run_test([QUICKSTART, det_ckpt, '--work-dir', str(tmp_path / 'b'), '--out', tta,
                         '--tta', '--amp', '--no-progress', *_det_options(shapes)])
    assert 'coco/bbox_mAP' in metrics
    with open(plain) as f, open(tta) as g:
        a, b = json.load(f), json.load(g)
    assert len(b) > 0 and a != b  # the merged views are other detections
    with pytest.raises(SystemExit, match='quickstart_ssd_shapes.py has no tta_model. Add'):
        run_test([QUICKSTART, det_ckpt, '--tta', '--cfg-options', 'tta_model=None'])


SEG_CONFIG = '''
_base_ = [{base!r}, {runtime!r}]
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], pad_size_divisor=16),
    backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(2,)),
    decode_head=dict(type='FCNHead', in_channels=16, channels=16, num_convs=1, num_classes=6,
                     loss_decode=dict(type='CrossEntropyLoss')),
    test_cfg=dict(mode='whole'))
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={root!r}, generate=False))
train_dataloader = None
val_dataloader = None
val_evaluator = None
test_cfg = dict(type='TestLoop')
test_evaluator = dict(type='IoUMetric')
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(112, 96), keep_ratio=True),
         dict(type='Resize', scale=(84, 72), keep_ratio=True)],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True)],
        [dict(type='PackSegInputs')]])]
'''


def test_segmentation_png_label_maps_plots_and_tta(shapes, tmp_path):
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

    masks = tmp_path / 'masks'
    metrics = run_test([str(config), ckpt, '--work-dir', str(tmp_path / 'wd'), '--out',
                         str(masks), '--plots', str(tmp_path / 'plots'), '--no-progress'])
    assert 'mIoU' in metrics
    written = sorted(os.listdir(masks))
    assert len(written) == 4 and all(n.endswith('.png') for n in written)
    net = init_model(str(config), ckpt, device='cpu')
    hist = np.zeros((6, 6), np.int64)
    for name in written:
        png = np.asarray(Image.open(masks / name))
        image = osp.join(shapes, 'images', 'val', name[:-4] + '.jpg')
        if not osp.isfile(image):
            image = image[:-4] + '.png'
        assert png.dtype == np.uint8 and png.shape == (96, 112)
        np.testing.assert_array_equal(png, inference(image, net).sem_seg)
        gt = np.asarray(Image.open(osp.join(shapes, 'masks', 'val', name))).astype(np.int64)
        valid = gt != 255
        hist += np.bincount(gt[valid] * 6 + png[valid], minlength=36).reshape(6, 6)
    with open(tmp_path / 'plots' / 'analysis.json') as f:
        analysis = json.load(f)
    np.testing.assert_array_equal(np.array(analysis['confusion_matrix']), hist)  # the oracle
    assert len(analysis['pr_curves']) == 6
    for name in ('pr_curves.png', 'confusion_matrix.png'):
        assert (tmp_path / 'plots' / name).stat().st_size > 5000

    with pytest.raises(ValueError, match='PNG label maps into a folder'):
        run_test([str(config), ckpt, '--out', str(tmp_path / 'x.json'), '--no-progress'])
    with pytest.raises(SystemExit, match='COCO results are detections'):
        run_test([str(config), ckpt, '--out', 'x.json', '--out-format', 'coco'])

    tta = run_test([str(config), ckpt, '--work-dir', str(tmp_path / 'wd3'), '--tta',
                     '--out', str(tmp_path / 'tta_masks'), '--no-progress'])
    assert 'mIoU' in tta
    assert len(os.listdir(tmp_path / 'tta_masks')) == 4

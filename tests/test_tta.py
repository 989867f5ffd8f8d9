"""Test-time augmentation: TestTimeAug makes every combination of views; DetTTAModel and
SegTTAModel give what a plain computation of the same views gives (flip the detections
back and NMS them together with torchvision; average the softmax of hand-computed logits);
every recipe's tta_pipeline contains its plain test view."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torchvision
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from densebox.apis import inference, init_model
from densebox.datasets.shapes import generate_shapes
from densebox.models.utils import resize
from densebox.registry import DATASETS, MODELS, TRANSFORMS
from densebox.setup_env import register_all_modules
from densebox.config import REPO_ROOT

register_all_modules()
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart_ssd_shapes.py')
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes(root, num_train=2, num_val=3, img_size=(90, 120), seed=5)
    return root


def test_test_time_aug_makes_every_combination():
    tta = TRANSFORMS.build(dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(40, 30)), dict(type='Resize', scale=(80, 60))],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='PackDetInputs')]]))
    assert tta.num_augs == 4
    img = np.arange(60 * 90 * 3, dtype=np.uint8).reshape(60, 90, 3)
    out = tta(dict(img=img, img_id=0, img_path=None, ori_shape=(60, 90), img_shape=(60, 90)))
    assert len(out['inputs']) == len(out['data_samples']) == 4
    shapes = [tuple(t.shape[1:]) for t in out['inputs']]
    assert shapes == [(30, 40), (30, 40), (60, 80), (60, 80)]
    flips = [s.metainfo['flip'] for s in out['data_samples']]
    assert flips == [False, True, False, True]
    small = cv2.resize(img, (40, 30), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out['inputs'][1].permute(1, 2, 0).numpy(), small[:, ::-1])
    with pytest.raises(ValueError, match='step 0 must be a non-empty list'):
        TRANSFORMS.build(dict(type='TestTimeAug', transforms=[dict(type='PackDetInputs')]))


def test_det_tta_equals_flipped_back_detections_merged_by_nms(shapes, tmp_path):
    torch.manual_seed(0)
    cfg = Config.fromfile(QUICKSTART)
    model = MODELS.build(cfg.model).eval()
    ckpt = str(tmp_path / 'ssd.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    model = init_model(QUICKSTART, ckpt, device='cpu', cpu_fast_paths=False)
    dataset = DATASETS.build(dict(
        type='CocoDetDataset', data_root=shapes, metainfo=dict(classes=model.dataset_meta['classes']),
        ann_file='annotations/instances_val.json', data_prefix=dict(img='images/val/'),
        test_mode=True, pipeline=cfg.tta_pipeline))
    tta = MODELS.build(dict(type='DetTTAModel', module=model,
                            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.45),
                                         max_per_img=50))).eval()
    with torch.no_grad():
        merged = tta.test_step(pseudo_collate([dataset[0], dataset[1]]))
    assert len(merged) == 2
    for k, sample in enumerate(merged):
        path = dataset.get_data_info(k)['img_path']
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        plain = inference(rgb, model)
        mirrored = inference(np.ascontiguousarray(rgb[:, ::-1]), model)
        back = mirrored.boxes.copy()
        back[:, 0], back[:, 2] = w - mirrored.boxes[:, 2], w - mirrored.boxes[:, 0]
        boxes = torch.from_numpy(np.concatenate([plain.boxes, back]))
        scores = torch.from_numpy(np.concatenate([plain.scores, mirrored.scores]))
        labels = torch.from_numpy(np.concatenate([plain.labels, mirrored.labels]))
        keep = torchvision.ops.batched_nms(boxes, scores, labels, 0.45)[:50]
        pred = sample.pred_instances
        assert len(pred.scores) == len(keep) == 50
        np.testing.assert_allclose(pred.scores.numpy(), scores[keep].numpy(), atol=1e-6)
        np.testing.assert_allclose(pred.bboxes.numpy(), boxes[keep].numpy(), atol=1e-3)
        np.testing.assert_array_equal(pred.labels.numpy(), labels[keep].numpy())
        assert len(sample.gt_instances) > 0 and sample.metainfo['flip'] is False


def _seg_cfg():
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreprocessor', mean=MEAN.tolist(), std=STD.tolist(),
                               pad_size_divisor=16),
        backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(2,)),
        decode_head=dict(type='FCNHead', in_channels=16, channels=16, num_convs=1,
                         num_classes=6, loss_decode=dict(type='CrossEntropyLoss')),
        test_cfg=dict(mode='whole'))


def _hand_logits(model, rgb, size, flip):
    """Resize to ``size`` (w, h), optionally mirror, normalise, pad to 16, network, crop,
    mirror back, bilinear resize to the image: (C, H, W) logits."""
    w, h = size
    x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    if flip:
        x = x[:, ::-1]
    x = torch.from_numpy(((x - MEAN) / STD).transpose(2, 0, 1).copy()).float()[None]
    ph, pw = -(-h // 16) * 16, -(-w // 16) * 16
    x = torch.nn.functional.pad(x, (0, pw - w, 0, ph - h))
    with torch.no_grad():
        logits = model.encode_decode(x)[:, :, :h, :w]
    if flip:
        logits = logits.flip(3)
    return resize(logits, rgb.shape[:2], 'bilinear', model.align_corners)[0]


def test_seg_tta_equals_the_average_of_hand_computed_probabilities(shapes):
    torch.manual_seed(0)
    model = MODELS.build(_seg_cfg()).eval()
    with torch.no_grad():  # a random head predicts ~1/6 everywhere: spread its logits
        for p in model.decode_head.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    scales = ((64, 48), (96, 72))
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='TestTimeAug', transforms=[
                    [dict(type='Resize', scale=s, keep_ratio=True) for s in scales],
                    [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
                    [dict(type='LoadAnnotations', with_bbox=False, with_label=False,
                          with_seg=True)],
                    [dict(type='PackSegInputs')]])]
    dataset = DATASETS.build(dict(type='ShapesSegDataset', data_root=shapes,
                                  data_prefix=dict(img_path='images/val', seg_map_path='masks/val'),
                                  pipeline=pipeline))
    tta = MODELS.build(dict(type='SegTTAModel', module=model)).eval()
    with torch.no_grad():
        merged = tta.test_step(pseudo_collate([dataset[0], dataset[2]]))
    for sample, k in zip(merged, (0, 2)):
        path = dataset.get_data_info(k)['img_path']
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        probs = []
        for sw, sh in scales:  # keep-ratio fit, as Resize(keep_ratio=True) computes it
            f = min(max(sw, sh) / max(h, w), min(sw, sh) / min(h, w))
            size = (int(w * f + 0.5), int(h * f + 0.5))
            for flip in (False, True):
                probs.append(_hand_logits(model, rgb, size, flip).softmax(0))
        expected = torch.stack(probs).mean(0)
        torch.testing.assert_close(sample.seg_logits.data, expected, atol=1e-5, rtol=1e-4)
        np.testing.assert_array_equal(sample.pred_sem_seg.data[0].numpy(),
                                      expected.argmax(0).numpy())
        assert sample.gt_sem_seg.data.shape[-2:] == (h, w)
        # and TTA is not a no-op: it differs from the plain prediction somewhere
        plain = _hand_logits(model, rgb, (int(w * min(64 / w, 48 / h) + 0.5),
                                          int(h * min(64 / w, 48 / h) + 0.5)), False).softmax(0)
        assert not torch.allclose(plain, expected, atol=1e-3)


RECIPES = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')))


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_every_recipe_tta_contains_its_plain_test_view(path):
    cfg = Config.fromfile(path)
    assert 'tta_pipeline' in cfg and 'tta_model' in cfg, 'tools/test.py --tta needs them'
    if cfg.tta_model is None:  # a recipe evaluated on one view opts out, and --tta says so
        from densebox.test_options import _apply_tta
        with pytest.raises(SystemExit, match=f'--tta: {osp.basename(path)} has no tta_model'):
            _apply_tta(cfg, osp.basename(path))
        return
    task = 'det' if 'bbox_head' in cfg.model else 'seg'
    assert cfg.tta_model.type == {'det': 'DetTTAModel', 'seg': 'SegTTAModel'}[task]
    test = cfg.test_dataloader.dataset
    while 'pipeline' not in test:
        test = test.dataset
    plain = [t for t in test.pipeline if t['type'] == 'Resize']
    steps = cfg.tta_pipeline[1]['transforms']
    resizes = [t for t in steps[0] if t['type'] == 'Resize']
    if plain:
        assert any(dict(r) == dict(plain[0]) for r in resizes), (plain[0], resizes)
    flips = [t.get('prob') for step in steps for t in step if t['type'] == 'RandomFlip']
    assert sorted(flips) == [0.0, 1.0]
    assert steps[-1][0]['type'] == test.pipeline[-1]['type']  # the same packing

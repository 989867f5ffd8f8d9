"""End to end through tools/train.py and tools/test.py on generated data: train a tiny SSD,
save, resume, evaluate with the COCO and VOC metrics; the real recipes on tiny data trees."""
import glob
import json
import os
import os.path as osp
import re
import runpy
import shlex
import shutil

import pytest
import torch

from densebox.cli import test_main as run_test, train_main as run_train
from densebox.datasets.shapes import SHAPES_CLASSES, generate_shapes
from densebox.engine import safe_torch_load
from densebox.registry import HOOKS
from densebox.zoo import StartingPointMissing
from mmengine.hooks import Hook
from test_starting_points import caffe_vgg16_state

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class Interrupted(Exception):
    pass


@HOOKS.register_module(force=True)
class InterruptAfterEpoch(Hook):
    """Kill the run once the checkpoint of ``epoch`` is written, as a pre-empted job would."""
    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            raise Interrupted(f'stopped after epoch {self.epoch}')


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes(root, num_train=8, num_val=4, img_size=(96, 96), seed=3)
    return root


def _tiny_config(tmp_path, data_root, max_epochs, interrupt_after=None, extra=''):
    """The quickstart recipe, deterministic (no random augmentation, no workers)."""
    path = tmp_path / f'tiny_ssd_{interrupt_after}_{len(extra)}.py'
    hooks = [] if interrupt_after is None else [dict(type='InterruptAfterEpoch', epoch=interrupt_after)]
    path.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'quickstart_ssd_shapes.py')!r}]
data_root = {data_root + '/'!r}
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_interval=100)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[1], gamma=0.5)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=5))
custom_hooks = {hooks!r}
''' + extra)
    return str(path)


def _weights(path):
    return safe_torch_load(path)['state_dict']


def test_train_save_resume_and_test(tmp_path, shapes_root):
    # Two epochs straight through.
    straight = str(tmp_path / 'straight')
    run_train([_tiny_config(tmp_path, shapes_root, 2), '--work-dir', straight])
    # The same run stopped part-way, then resumed from the latest checkpoint.
    resumed = str(tmp_path / 'resumed')
    with pytest.raises(Interrupted):
        run_train([_tiny_config(tmp_path, shapes_root, 2, interrupt_after=1), '--work-dir', resumed])
    assert osp.isfile(osp.join(resumed, 'epoch_1.pth'))
    assert not osp.exists(osp.join(resumed, 'epoch_2.pth'))
    run_train([_tiny_config(tmp_path, shapes_root, 2), '--work-dir', resumed, '--resume'])

    ckpt = safe_torch_load(osp.join(resumed, 'epoch_2.pth'))
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 4
    # The scheduler halved the lr after epoch 1 in both runs.
    assert ckpt['optimizer']['param_groups'][0]['lr'] == pytest.approx(1e-3)
    expected = _weights(osp.join(straight, 'epoch_2.pth'))
    for key, value in _weights(osp.join(resumed, 'epoch_2.pth')).items():
        torch.testing.assert_close(value, expected[key], msg=f'{key} differs after resume')

    out = str(tmp_path / 'preds.json')
    metrics = run_test([_tiny_config(tmp_path, shapes_root, 2), osp.join(resumed, 'epoch_2.pth'),
                         '--work-dir', str(tmp_path / 'test'), '--out', out,
                         '--out-format', 'densebox',  # densebox's own dump (default: COCO)
                         '--show-dir', str(tmp_path / 'drawn'), '--score-thr', '0.0'])
    assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0
    with open(out) as f:
        dumped = json.load(f)
    assert dumped['classes'] == list(SHAPES_CLASSES)
    assert len(dumped['predictions']) == 4
    assert all(len(p['bboxes']) == len(p['scores']) == len(p['labels']) for p in dumped['predictions'])
    assert len(glob.glob(str(tmp_path / 'drawn' / '*.jpg'))) == 4


def test_voc_layout_evaluates_with_voc_metric(tmp_path, shapes_root):
    work = str(tmp_path / 'run')
    cfg = _tiny_config(tmp_path, shapes_root, 1)
    run_train([cfg, '--work-dir', work])
    voc = f'''
test_dataloader = dict(dataset=dict(
    _delete_=True, type='VOCDataset', data_root={shapes_root + '/'!r},
    ann_file='VOC/ImageSets/Main/val.txt', data_prefix=dict(sub_data_root='VOC/'),
    metainfo=dict(classes={SHAPES_CLASSES!r}), test_mode=True, pipeline=pipeline))
test_evaluator = dict(_delete_=True, type='VOCMetric', iou_thr=0.5, eval_mode='area')
'''
    metrics = run_test([_tiny_config(tmp_path, shapes_root, 1, extra=voc),
                        osp.join(work, 'epoch_1.pth'), '--work-dir', work])
    assert 0.0 <= metrics['pascal_voc/mAP'] <= 1.0


def _voc_tree(shapes_root, dest):
    """A VOC07 + VOC12 tree with real VOC class names, made from the shapes VOC layout."""
    names = {'circle': 'person', 'square': 'car', 'triangle': 'dog', 'star': 'bird', 'cross': 'boat'}
    for year in ('VOC2007', 'VOC2012'):
        shutil.copytree(osp.join(shapes_root, 'VOC'), osp.join(dest, year))
        for xml in glob.glob(osp.join(dest, year, 'Annotations', '*.xml')):
            text = open(xml).read()
            text = re.sub(r'<name>(\w+)</name>', lambda m: f'<name>{names[m.group(1)]}</name>', text)
            open(xml, 'w').write(text)
        sets = osp.join(dest, year, 'ImageSets', 'Main')
        shutil.copy(osp.join(sets, 'val.txt'), osp.join(sets, 'test.txt'))
        with open(osp.join(sets, 'trainval.txt'), 'w') as f:
            f.write('train_000000\ntrain_000001\n')


def test_ssd300_voc_recipe_trains_and_tests_on_a_tiny_tree(tmp_path, shapes_root, monkeypatch):
    """As a new user meets the recipe: without the ImageNet VGG16 in the cache it stops
    before training; after the converter command it prints, it trains from those weights."""
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    data = str(tmp_path / 'VOCdevkit')
    _voc_tree(shapes_root, data)
    work = str(tmp_path / 'ssd300')
    opts = [f'train_dataloader.dataset.dataset.datasets.0.data_root={data}/',
            f'train_dataloader.dataset.dataset.datasets.1.data_root={data}/',
            f'val_dataloader.dataset.data_root={data}/', f'test_dataloader.dataset.data_root={data}/',
            'train_dataloader.dataset.times=1', 'train_dataloader.batch_size=2',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            'val_dataloader.batch_size=2', 'test_dataloader.batch_size=2',
            'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1']
    config = osp.join(ROOT, 'configs', 'ssd300_voc.py')
    with pytest.raises(StartingPointMissing, match='vgg16_caffe-292e1171.pth') as err:
        run_train([config, '--work-dir', work, '--cfg-options', *opts])
    assert not osp.exists(work)  # stopped before the runner: no work dir, no log
    # The published file (here a Caffe-keyed stand-in), converted by the printed command.
    caffe = caffe_vgg16_state(seed=11, layout='features')
    src = str(tmp_path / 'vgg16_caffe-292e1171.pth')
    torch.save(caffe, src)
    command = next(line for line in str(err.value).splitlines() if 'convert it yourself' in line)
    argv = shlex.split(command.split(': ', 1)[1].replace('vgg16_caffe-292e1171.pth', src, 1))
    runpy.run_path(osp.join(ROOT, argv[1]))['main'](argv[2:])
    run_train([config, '--work-dir', work, '--cfg-options', *opts])
    trained = safe_torch_load(osp.join(work, 'epoch_1.pth'))['state_dict']
    # one step at the warm-up lr barely moves conv1_1: it started from the (reordered) file
    torch.testing.assert_close(trained['backbone.features.0.weight'],
                               caffe['features.0.weight'].flip(1), rtol=0, atol=1e-3)
    metrics = run_test([config, osp.join(work, 'epoch_1.pth'),
                         '--work-dir', work, '--cfg-options', *opts])
    assert 0.0 <= metrics['pascal_voc/mAP'] <= 1.0


@pytest.mark.parametrize('config,expected', [('ssd300_voc.py', 'VOC2007'),
                                             ('ssd300_coco.py', 'instances_train2017.json')])
def test_missing_data_names_the_path_and_the_readme(tmp_path, config, expected):
    with pytest.raises(FileNotFoundError, match=f'(?s){expected}.*data/README.md'):
        run_train([osp.join(ROOT, 'configs', config), '--work-dir', str(tmp_path),
                    '--cfg-options', 'train_dataloader.num_workers=0',
                    'train_dataloader.persistent_workers=False', 'model.backbone.init_cfg=None'])

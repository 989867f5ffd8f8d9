"""The iFormer / SG-Former recipes: a few training iterations and an evaluation through
tools/train.py and tools/test.py for each config family (tiny backbones, tiny data trees),
what the recipes start from, the converter command lines and the parameter / FLOP counts
tools/analyze_model.py reports."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from densebox.cli import test_main as run_test, train_main as run_train
from densebox.datasets import COCO_CLASSES
from densebox.datasets.shapes import generate_shapes
from learning import SAVE_INITIAL_WEIGHTS, train_then_test_before_and_after
from test_e2e_seg import _assert_learned_the_prior

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_IFORMER = dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), num_heads=(2, 2, 3, 4),
                    attention_heads=(1, 1, 1, 2, 3))
TINY_SGFORMER = dict(dims=(16, 32, 48, 64), num_heads=(2, 2, 2, 4), depths=(2, 2, 2, 1))

_LOADERS = '''
for _loader in (train_dataloader, val_dataloader, test_dataloader):
    _loader.update(num_workers=0, persistent_workers=False)
'''
_SMALL_SEG = '''crop = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='SegPad', size=crop, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
'''

# Six steps at 50x the recipes' AdamW lr (2e-4, 6e-5: test_recipes_read_as_the_papers_settings)
# learn the class prior of the data (two at the recipes' lr do not move the predictions).
_LEARNING = '''optim_wrapper = dict(optimizer=dict(lr=1e-2))
train_cfg = dict(max_iters=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=6), logger=dict(interval=1))
'''


def _derived(tmp_path, recipe, body):
    path = tmp_path / ('tiny_' + recipe)
    path.write_text(f"_base_ = [{osp.join(ROOT, 'configs', recipe)!r}]\n" + body)
    return str(path)


def _train_and_test(config, work):
    run_train([config, '--work-dir', work])
    ckpts = sorted(f for f in os.listdir(work) if f.endswith('.pth'))
    assert ckpts, f'no checkpoint in {work}'
    return run_test([config, osp.join(work, ckpts[-1]), '--work-dir', work])


def write_ade20k(root, num_train=3, num_val=2, size=(48, 64), seed=0, dominant=None):
    """ADEChallengeData2016 layout: JPEG images, PNG masks with 0 = other, 1..150 classes;
    with ``dominant``, about 80% of the blocks are that class (a prior to learn)."""
    rng = np.random.default_rng(seed)
    for split, count in (('training', num_train), ('validation', num_val)):
        for d in ('images', 'annotations'):
            os.makedirs(osp.join(root, d, split), exist_ok=True)
        for i in range(count):
            stem = f'ADE_{split[:-3] if split == "training" else "val"}_{i:08d}'
            Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(
                osp.join(root, 'images', split, stem + '.jpg'))
            blocks = rng.integers(0, 151, (size[0] // 8, size[1] // 8))
            if dominant is not None:
                blocks[rng.random(blocks.shape) < 0.8] = dominant
            mask = np.kron(blocks, np.ones((8, 8), np.int64)).astype(np.uint8)
            Image.fromarray(mask).save(osp.join(root, 'annotations', split, stem + '.png'))


def test_fpn_iformer_ade20k_recipe(tmp_path):
    data = str(tmp_path / 'ADEChallengeData2016')
    write_ade20k(data, dominant=1)  # mostly 'wall'

    config = _derived(tmp_path, 'fpn_iformer_s_ade20k_40k.py', f'''
data_root = {data + '/'!r}
model = dict(backbone=dict(arch={dict(TINY_IFORMER, _delete_=True)!r}, init_cfg=None),
             neck=dict(in_channels=[16, 32, 48, 64], out_channels=32),
             decode_head=dict(in_channels=[32] * 4, channels=16))
{_SMALL_SEG}{_LEARNING}param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=6, by_epoch=False)]
''' + SAVE_INITIAL_WEIGHTS + _LOADERS)
    before, after = train_then_test_before_and_after(config, str(tmp_path / 'work'))
    _assert_learned_the_prior(before, after)


def test_upernet_sgformer_ade20k_recipe(tmp_path):
    data = str(tmp_path / 'ADEChallengeData2016')
    write_ade20k(data, dominant=1)  # mostly 'wall'

    config = _derived(tmp_path, 'upernet_sgformer_b_ade20k_160k.py', f'''
data_root = {data + '/'!r}
model = dict(backbone=dict(arch={dict(TINY_SGFORMER, _delete_=True)!r}, init_cfg=None),
             decode_head=dict(in_channels=[16, 32, 48, 64], channels=16),
             auxiliary_head=dict(in_channels=48, channels=8))
{_SMALL_SEG}{_LEARNING}param_scheduler = [  # the recipe's warm-up start, then constant
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=2)]
''' + SAVE_INITIAL_WEIGHTS + _LOADERS)
    before, after = train_then_test_before_and_after(config, str(tmp_path / 'work'))
    _assert_learned_the_prior(before, after)


def _tiny_coco(tmp_path):
    data = str(tmp_path / 'coco')
    generate_shapes(data, num_train=4, num_val=2, img_size=(96, 96), seed=5)
    coco_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    categories = [dict(id=i, name=n) for i, n in zip(coco_ids, COCO_CLASSES)]
    for split, folder in (('train', 'train2017'), ('val', 'val2017')):
        with open(osp.join(data, 'annotations', f'instances_{split}.json')) as f:
            ann = json.load(f)
        ann['categories'] = categories
        with open(osp.join(data, 'annotations', f'instances_{folder}.json'), 'w') as f:
            json.dump(ann, f)
        os.rename(osp.join(data, 'images', split), osp.join(data, folder))
    return data


@pytest.mark.parametrize('recipe,arch,channels', [
    ('ssd512_iformer_s_coco.py', TINY_IFORMER, (32, 48, 64)),
    ('ssd512_sgformer_s_coco.py', TINY_SGFORMER, (32, 48, 64))], ids=['iformer', 'sgformer'])
def test_ssd512_coco_recipes(tmp_path, recipe, arch, channels):
    data = _tiny_coco(tmp_path)
    levels = channels + (32, 32, 32, 32)
    # 320 x 320 instead of 512 x 512 keeps the seven levels (40, 20, 10, 5, 3, 2, 1) and
    # the recipe's augmentation, at a third of the cost.
    config = _derived(tmp_path, recipe, f'''
data_root = {data + '/'!r}
scale = 320 / 512
model = dict(backbone=dict(arch={dict(arch, _delete_=True)!r}, init_cfg=None),
             neck=dict(in_channels={channels!r}, out_channels={levels!r}),
             bbox_head=dict(in_channels={levels!r}, anchor_generator=dict(
                 input_size=320, strides=(8, 16, 32, 64, 107, 160, 320),
                 min_sizes=[s * scale for s in (20.48, 51.2, 133.12, 215.04, 296.96, 378.88,
                                                460.8)],
                 max_sizes=[s * scale for s in (51.2, 133.12, 215.04, 296.96, 378.88, 460.8,
                                                542.72)])))
mean_rgb = [123.675, 116.28, 103.53]
train_pipeline = [   # coco_ssd512.py's, at 320
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='Expand', mean=mean_rgb, ratio_range=(1, 4), prob=0.5),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(times=1, dataset=dict(
    data_root=data_root, pipeline=train_pipeline)))
val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
''' + _LOADERS)
    metrics = _train_and_test(config, str(tmp_path / 'work'))
    assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0


# ---------------------------------------------------------------------- the recipes as read
def _cfg(name):
    return Config.fromfile(osp.join(ROOT, 'configs', name))


def test_recipes_read_as_the_papers_settings():
    fpn = _cfg('fpn_iformer_s_ade20k_40k.py')
    assert fpn.model.backbone.init_cfg.checkpoint == 'zoo://iformer_s_in1k'
    assert fpn.model.neck.out_channels == 256 and fpn.model.decode_head.channels == 128
    assert fpn.optim_wrapper.optimizer.type == 'AdamW' and fpn.optim_wrapper.optimizer.lr == 2e-4
    assert fpn.train_cfg.max_iters == 40000 == fpn.param_scheduler[0].end
    assert fpn.train_dataloader.batch_size * 8 == fpn.auto_scale_lr.base_batch_size == 32
    upernet = _cfg('upernet_sgformer_b_ade20k_160k.py')
    assert upernet.model.decode_head.type == 'UPerHead'
    assert upernet.model.decode_head.in_channels == [96, 192, 384, 768]
    assert upernet.optim_wrapper.optimizer.lr == 6e-5
    assert upernet.train_cfg.max_iters == 160000 == upernet.param_scheduler[1].end
    small = _cfg('upernet_sgformer_s_ade20k_160k.py')
    assert small.model.backbone.arch == 's' and small.model.auxiliary_head.in_channels == 256
    assert small.model.backbone.init_cfg.checkpoint == 'checkpoints/sgformer_s_in1k.pth'
    sg_det = _cfg('ssd512_sgformer_s_coco.py')
    assert sg_det.model.backbone.type == 'SGFormer'
    assert 'attention_heads' not in sg_det.model.backbone     # _delete_ dropped iFormer's
    assert sg_det.optim_wrapper.optimizer.type == 'AdamW'
    assert 'momentum' not in sg_det.optim_wrapper.optimizer


@pytest.mark.parametrize('recipe,needle', [
    ('fpn_iformer_s_ade20k_40k.py', 'iformer_small.pth'),
    ('upernet_sgformer_b_ade20k_160k.py', 'checkpoints/sgformer_b_in1k.pth')])
def test_recipes_stop_before_training_without_their_weights(tmp_path, monkeypatch, recipe,
                                                            needle):
    from densebox.registry import MODELS
    import densebox.models  # noqa: F401
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    monkeypatch.chdir(tmp_path)
    backbone = dict(_cfg(recipe).model.backbone)
    tiny = TINY_IFORMER if backbone['type'] == 'IFormer' else TINY_SGFORMER
    model = MODELS.build(dict(backbone, arch=tiny))
    with pytest.raises(FileNotFoundError) as err:
        model.init_weights()
    assert needle in str(err.value) and 'init_cfg=None' in str(err.value)


# ---------------------------------------------------------------------- command lines
def _official_iformer_s():
    from test_iformer import official_state
    from densebox.models.backbones.iformer import ARCHS
    return official_state(ARCHS['s'])


def test_convert_command_lines_and_the_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    from densebox.engine.checkpoint import safe_torch_load
    from densebox.models.backbones import IFormer, SGFormer
    from test_sgformer import official_state as official_sgformer
    from densebox.models.backbones.sgformer import ARCHS
    import importlib.util

    def tool(name):
        spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'tools', 'convert',
                                                                     name + '.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    src = tmp_path / 'iformer_small.pth'
    state = _official_iformer_s()
    torch.save(state, src)
    tool('iformer').main([str(src), str(tmp_path / 'out.pth'), '--arch', 's'])
    out = safe_torch_load(str(tmp_path / 'out.pth'))
    assert out['meta']['arch'] == 's'
    model = IFormer('s', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'out.pth')))
    model.init_weights()
    torch.testing.assert_close(model.norm3.weight, state['norm.weight'])
    with pytest.raises(Exception, match='iFormer-B'):
        tool('iformer').main([str(src), str(tmp_path / 'bad.pth'), '--arch', 'b'])
    assert not (tmp_path / 'bad.pth').exists()

    # The zoo entry converts the official file once it is in the cache, with consent.
    downloads = tmp_path / 'home' / 'checkpoints' / 'downloads'
    downloads.mkdir(parents=True)
    os.link(src, downloads / 'iformer_small.pth')
    zoo_cfg = dict(type='Pretrained', checkpoint='zoo://iformer_s_in1k')
    with pytest.raises(RuntimeError, match='allow_unverified=True.*init_cfg=None'):
        IFormer('s', init_cfg=zoo_cfg).init_weights()
    model = IFormer('s', out_indices=(2,), init_cfg=dict(zoo_cfg, allow_unverified=True))
    model.init_weights()
    torch.testing.assert_close(model.stages[2].pos_embed, state['pos_embed3'])
    assert (tmp_path / 'home' / 'checkpoints' / 'iformer_s_in1k.pth').is_file()

    sg = official_sgformer(ARCHS['s'])
    torch.save({'state_dict_ema': sg, 'state_dict': {k: v * 0 for k, v in sg.items()}},
               tmp_path / 'sgformer_s.pth')
    tool('sgformer').main([str(tmp_path / 'sgformer_s.pth'), str(tmp_path / 'sg.pth'),
                           '--arch', 's', '--ema'])
    model = SGFormer('s', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'sg.pth')))
    model.init_weights()
    torch.testing.assert_close(model.pos_embed, sg['pos_embed'])


def test_analyze_model_counts_the_classifier_trunks(capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location('analyze_model',
                                                  osp.join(ROOT, 'tools', 'analyze_model.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = osp.join(ROOT, 'configs', '_base_', 'models', 'iformer_cls.py')
    result = module.main([config, '--shape', '224', '224'])
    assert result['params'] == 19_866_344            # paper: 20M (official file 19.866M)
    assert 4.80e9 < result['madds'] < 4.85e9          # paper: 4.8G (official file 4.849G)
    assert '19.87 M' in capsys.readouterr().out
    config = osp.join(ROOT, 'configs', '_base_', 'models', 'sgformer_cls.py')
    result = module.main([config, '--shape', '64', '64', '--cfg-options', 'model.arch=m'])
    assert result['params'] == 38_689_316             # the official sgformer_m

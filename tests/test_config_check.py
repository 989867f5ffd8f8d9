"""Config mistakes fail before training, in a sentence naming the key."""
import glob
import os
import os.path as osp

import pytest
from mmengine.config import Config

from densebox.cli import train_main
from densebox.datasets.shapes import generate_shapes
from densebox.config_check import ConfigError, check_cfg_options, check_config
from tiny_train import ROOT, tiny_det_config

SSD300_VOC = osp.join(ROOT, 'configs', 'ssd300_voc.py')
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart_ssd_shapes.py')


@pytest.mark.parametrize('config', [SSD300_VOC, QUICKSTART])
def test_top_level_max_epochs_points_to_train_cfg(config):
    # ssd300_voc has no top-level max_epochs; the quickstart has one as a file variable,
    # which its train_cfg already used: either way the override would do nothing.
    with pytest.raises(ConfigError, match=r'max_epochs.*train_cfg\.max_epochs'):
        check_cfg_options(Config.fromfile(config), {'max_epochs': 1}, config)


def test_misspelt_key_lists_close_matches():
    cfg = Config.fromfile(SSD300_VOC)
    with pytest.raises(ConfigError, match=r"no 'train_cfg.max_epoch'.*train_cfg\.max_epochs"):
        check_cfg_options(cfg, {'train_cfg.max_epoch': 1}, SSD300_VOC)
    with pytest.raises(ConfigError, match=r'\+optim_wrapper\.optimizer\.lrr='):
        check_cfg_options(cfg, {'optim_wrapper.optimizer.lrr': 1}, SSD300_VOC)


def test_real_keys_arguments_and_explicit_additions_pass():
    cfg = Config.fromfile(QUICKSTART)
    options = {'train_cfg.max_epochs': 1,
               'optim_wrapper.optimizer.amsgrad': True,  # an AdamW argument the config omits
               'load_from': 'x.pth',  # a Runner key the config omits
               '+my_new_key': 3}
    checked = check_cfg_options(cfg, options, QUICKSTART)
    assert checked == {'train_cfg.max_epochs': 1, 'optim_wrapper.optimizer.amsgrad': True,
                       'load_from': 'x.pth', 'my_new_key': 3}


@pytest.mark.parametrize('config', sorted(glob.glob(osp.join(ROOT, 'configs', '*.py'))))
def test_shipped_configs_pass_the_checks(config):
    check_config(Config.fromfile(config))


@pytest.mark.parametrize('key,value,message', [
    ('default_hooks.logger.type', 'LogerHook', r"default_hooks\.logger\.type: 'LogerHook'.*LoggerHook"),
    ('default_hooks.logger.intervall', 1, r"default_hooks\.logger\.intervall: LoggerHook .*'interval'"),
    ('test_evaluator.ann_fil', 'x.json', r"test_evaluator\.ann_fil: CocoMetric .*'ann_file'"),
    ('test_dataloader.dataset.ann_fle', 'x.json', r"test_dataloader\.dataset\.ann_fle: .*'ann_file'"),
    ('test_dataloader.dataset.pipeline.1.type', 'Resise', r"pipeline\.1\.type: 'Resise'.*'Resize'"),
    ('train_dataloader.sampler.shufle', True, r"sampler\.shufle: DefaultSampler .*'shuffle'"),
    ('param_scheduler.0.by_epochs', False, r"param_scheduler\.0\.by_epochs: LinearLR .*'by_epoch'"),
    ('optim_wrapper.optimizer.weight_decai', 0.1, r"optimizer\.weight_decai: AdamW .*'weight_decay'"),
    ('model.type', 'SingleStageDetektor', r"model\.type: .*'SingleStageDetector'"),
])
def test_misspelt_types_and_arguments_are_named(key, value, message):
    cfg = Config.fromfile(QUICKSTART)
    cfg.merge_from_dict({key: value})
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_a_bad_test_evaluator_stops_training_before_it_starts(tmp_path):
    """mmengine builds the test evaluator only after training (quickstart: train then test)."""
    data = str(tmp_path / 'shapes')
    generate_shapes(data, num_train=2, num_val=1, img_size=(64, 64), seed=0)
    cfg = tiny_det_config(tmp_path / 'cfg.py', data, max_epochs=1,
                          extra="test_evaluator = dict(type='CocoMetric', classwize=True)\n")
    with pytest.raises(ConfigError, match="test_evaluator.classwize: .*'classwise'"):
        train_main([cfg, '--work-dir', str(tmp_path / 'work')])
    assert not osp.exists(tmp_path / 'work') or not [
        f for f in os.listdir(tmp_path / 'work') if f.endswith('.pth')]


def test_cli_rejects_an_unknown_cfg_option(tmp_path):
    with pytest.raises(ConfigError, match='train_cfg.max_epochs'):
        train_main([SSD300_VOC, '--work-dir', str(tmp_path), '--cfg-options', 'max_epochs=1'])


def test_a_head_for_other_classes_than_the_data_is_named():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'ssd300_coco.py'))
    cfg.merge_from_dict({'model.bbox_head.num_classes': 20})   # VOC's head on COCO
    with pytest.raises(ConfigError, match=r'model\.bbox_head\.num_classes is 20, but '
                       r'train_dataloader\.dataset has 80 classes \(CocoDetDataset\.METAINFO\)'
                       r'\. Set model\.bbox_head\.num_classes=80'):
        check_config(cfg)
    quickstart = Config.fromfile(QUICKSTART)                    # classes set in metainfo
    quickstart.merge_from_dict({'test_dataloader.dataset.metainfo.classes': ('a', 'b')})
    with pytest.raises(ConfigError, match=r'test_dataloader\.dataset has 2 classes \(its '
                       r'metainfo\.classes\)'):
        check_config(quickstart)
    check_config(quickstart, keys=['train_dataloader', 'model'])  # only what was asked


def test_wrapped_and_segmentation_data_sets_are_counted():
    from densebox.config_check import check_num_classes
    seg = dict(model=dict(decode_head=dict(num_classes=21),
                          auxiliary_head=[dict(num_classes=21), dict(num_classes=19)]),
               train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=dict(
                   type='ConcatDataset', datasets=[dict(type='VOCSegDataset')]))))
    with pytest.raises(ConfigError, match=r'model\.auxiliary_head\.1\.num_classes is 19'):
        check_num_classes(seg)
    seg['model']['auxiliary_head'][1]['num_classes'] = 21
    check_num_classes(seg)

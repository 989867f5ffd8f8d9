"""Total batch: each recipe records the total its schedule was designed for, and train.py
logs the run's total (processes x per-process batch x accumulation) and warns when it
differs without --auto-scale-lr."""
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from densebox.engine.batch_size import report_total_batch, total_batch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# recipe -> (total batch of its source recipe, per-GPU batch in the config)
RECIPE_TOTALS = {
    'ssd300_voc.py': (32, 32),               # Caffe SSD: 8 per GPU x 4 GPUs
    'ssd512_voc.py': (32, 32),
    'ssd300_coco.py': (32, 32),
    'ssd512_coco.py': (32, 32),
    'ssdlite_mobilenetv2_coco.py': (192, 24),  # mmdetection: 24 x 8
    'ffnet_78s_cityscapes.py': (8, 2),        # mmsegmentation Cityscapes: 2 x 4
    'ffnet_150_cityscapes.py': (8, 2),
    'mobile_deeplabv3_voc.py': (16, 4),       # mmsegmentation VOC12-aug: 4 x 4
}


def _logger():
    logger = logging.getLogger('test_batch_size')
    logger.propagate = True
    logger.setLevel(logging.INFO)
    return logger


@pytest.mark.parametrize('recipe', sorted(RECIPE_TOTALS))
def test_each_recipe_states_the_total_batch_of_its_source(recipe):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', recipe))
    base, per_gpu = RECIPE_TOTALS[recipe]
    assert cfg.auto_scale_lr.base_batch_size == base
    assert cfg.train_dataloader.batch_size == per_gpu
    source = open(osp.join(ROOT, 'configs', recipe)).read()
    assert 'per GPU' in source or 'per GPU' in ''.join(
        open(osp.join(ROOT, 'configs', '_base_', 'schedules', f)).read()
        for f in ('ssd_sgd_24e.py', 'seg_poly_80k.py', 'seg_poly_20k.py'))


def test_the_recipe_total_on_its_gpus_logs_without_a_warning(caplog):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'ssd300_voc.py'))
    with caplog.at_level(logging.INFO, logger='test_batch_size'):
        assert report_total_batch(cfg, 1, False, _logger(), 'ssd300_voc.py') is None
    assert 'total batch 32 = 32 per process x 1 process' in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    cfg.train_dataloader.batch_size = 4  # the 8-GPU command of the README
    assert report_total_batch(cfg, 8, False, _logger()) is None


def test_eight_gpus_at_the_per_gpu_batch_warn(caplog):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'ssd300_voc.py'))
    with caplog.at_level(logging.INFO, logger='test_batch_size'):
        warning = report_total_batch(cfg, 8, False, _logger(), 'ssd300_voc.py')
    assert warning is not None
    for part in ('total batch is 256', '32 per process x 8 processes', 'designed for 32',
                 'learning rate stays 0.001', 'an epoch has 0.125x the iterations',
                 '--auto-scale-lr', 'train_dataloader.batch_size=4'):
        assert part in warning, part
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [warning]
    # --auto-scale-lr is the deliberate choice: no warning
    assert report_total_batch(cfg, 8, True, _logger()) is None


def test_accumulation_counts_in_the_total_and_auto_scale_lr_is_warned_about_it():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'ffnet_78s_cityscapes.py'))
    cfg.optim_wrapper.accumulative_counts = 4
    batch = total_batch(cfg, 1)
    assert (batch.per_process, batch.processes, batch.accumulation, batch.total, batch.base) == \
        (2, 1, 4, 8, 8)
    assert report_total_batch(cfg, 1, False, _logger()) is None  # 2 x 1 x 4 = 8: the recipe's
    warning = report_total_batch(cfg, 1, True, _logger())
    assert 'does not count the 4 gradient accumulation steps' in warning
    cfg.optim_wrapper.accumulative_counts = 1  # one GPU, no accumulation: a quarter of the images
    warning = report_total_batch(cfg, 1, False, _logger())
    assert 'its 80000 iterations see 0.25x the images' in warning
    assert 'train_dataloader.batch_size=8' in warning


def test_train_logs_the_total_batch_of_the_runner(monkeypatch):
    """train.py hands the built runner's world size and logger to the report."""
    import densebox.cli as cli
    seen = {}

    class FakeRunner:
        world_size = 8
        logger = _logger()

        def __init__(self, cfg):
            self.cfg = cfg
            self.model = torch.nn.Conv2d(3, 3, 3)  # train_main prepares its CPU convs

        def train(self):
            seen['trained'] = True

    monkeypatch.setattr(cli, '_build_runner', FakeRunner)
    import densebox.engine.batch_size as batch_size

    def spy(cfg, world_size, auto_scale_lr, logger, config_name):
        seen['report'] = (world_size, auto_scale_lr, logger is FakeRunner.logger)
        return report_total_batch(cfg, world_size, auto_scale_lr, logger, config_name)

    monkeypatch.setattr(batch_size, 'report_total_batch', spy)
    cli.train_main([osp.join(ROOT, 'configs', 'ssdlite_mobilenetv2_coco.py')])
    assert seen == {'report': (8, False, True), 'trained': True}

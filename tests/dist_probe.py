"""Imported by the 2-process test's workers (``custom_imports``): each rank writes the images
of its training batches and its validation metrics under ``$DENSEBOX_TEST_PROBE``."""
import json
import os
import os.path as osp

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook

from densebox.registry import HOOKS


@HOOKS.register_module()
class ProbeRanks(Hook):
    def _path(self, what):
        return osp.join(os.environ['DENSEBOX_TEST_PROBE'], f'rank{get_dist_info()[0]}_{what}')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        with open(self._path('train.txt'), 'a') as f:
            for sample in data_batch['data_samples']:
                f.write(f'{runner.iter} {sample.img_path}\n')

    def after_val_epoch(self, runner, metrics=None):
        with open(self._path('metrics.json'), 'w') as f:
            json.dump(dict(metrics=metrics, world_size=get_dist_info()[1],
                           backend=runner.cfg.env_cfg.dist_cfg.backend), f)

"""What the end-to-end tests use to show that training learned: the weights a run starts
from are saved, so that the same model is evaluated before and after training."""
import os
import os.path as osp

import torch
from mmengine.hooks import Hook

from densebox.registry import HOOKS

INITIAL = 'initial.pth'
# config text: add to a test config whose recipe has no custom_hooks of its own
SAVE_INITIAL_WEIGHTS = "custom_hooks = [dict(type='SaveInitialWeights')]\n"


@HOOKS.register_module(force=True)
class SaveInitialWeights(Hook):
    """Write the model's weights as training starts (after ``init_weights`` and any
    ``load_from``) to ``<work_dir>/initial.pth``, a checkpoint tools/test.py loads."""
    priority = 'LOWEST'

    def before_train(self, runner):
        state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
        torch.save({'state_dict': state, 'meta': {}}, osp.join(runner.work_dir, INITIAL))


def train_then_test_before_and_after(config: str, work: str, extra_test_args=()):
    """Train ``config`` (which holds :data:`SAVE_INITIAL_WEIGHTS`) into ``work``, then
    evaluate the initial and the last checkpoint with tools/test.py: (before, after)."""
    from densebox.cli import test_main, train_main
    train_main([config, '--work-dir', work])
    ckpts = sorted(f for f in os.listdir(work) if f.endswith('.pth') and f != INITIAL)
    assert ckpts, f'no checkpoint in {work}'
    before = test_main([config, osp.join(work, INITIAL), '--work-dir', work, '--no-progress',
                        *extra_test_args])
    after = test_main([config, osp.join(work, ckpts[-1]), '--work-dir', work, '--no-progress',
                       *extra_test_args])
    return before, after

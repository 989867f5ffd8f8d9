"""tools/train.py's options as a user relies on them: ``--amp`` on a machine without CUDA,
``--auto-scale-lr`` (the lr the optimizer really uses), ``--resume PATH`` (that file, the
iteration counter going on), and the SSD recipes' warm-up + multi-step schedule against the
formula written out by hand."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from densebox.cli import train_main
from densebox.datasets.shapes import generate_shapes
from densebox.engine import safe_torch_load
from densebox.registry import HOOKS
from densebox.config import REPO_ROOT
from tiny_train import tiny_det_config


class StopTraining(Exception):
    pass


@HOOKS.register_module(force=True)
class RecordTraining(Hook):
    """Record what the optimizer is about to use: (iteration, lr) before every iteration,
    and the weights and counters when training starts (after any resume). ``stop_after``
    ends the run after that many iterations of this process."""
    priority = 'LOWEST'  # after the schedulers and the resume
    seen = dict(lrs=[], start=None)

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.done = 0

    def before_train(self, runner):
        state = {k: v.clone() for k, v in runner.model.state_dict().items()}
        RecordTraining.seen['start'] = (runner.iter, runner.epoch, state)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        RecordTraining.seen['lrs'].append((runner.iter, runner.optim_wrapper.get_lr()['lr'][0]))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.done += 1
        if self.stop_after is not None and self.done >= self.stop_after:
            raise StopTraining


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes(root, num_train=2, num_val=2, img_size=(64, 64), seed=4)
    return root


BASE_LR = 2e-3  # tiny_det_config's AdamW lr


def _config(tmp_path, shapes, max_epochs, stop_after=None, base_batch_size=8):
    """The quickstart SSD, deterministic, one iteration per epoch (2 images, batch 2), a
    constant lr, recording the lr of every iteration."""
    RecordTraining.seen = dict(lrs=[], start=None)
    extra = f'''
param_scheduler = []
auto_scale_lr = dict(enable=False, base_batch_size={base_batch_size})
custom_hooks = [dict(type='RecordTraining', stop_after={stop_after!r})]
'''
    return tiny_det_config(tmp_path / f'tiny_{max_epochs}_{stop_after}.py', shapes,
                           max_epochs=max_epochs, batch_size=2, extra=extra)


def test_train_amp_on_a_machine_without_cuda_says_so_and_builds_nothing(tmp_path):
    """Through the script, as a user runs it; CUDA hidden, so the check is the same on a
    GPU machine."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHONPATH=REPO_ROOT)  # this checkout
    work = tmp_path / 'work'
    out = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
                          'configs/quickstart_ssd_shapes.py', '--amp', '--work-dir', str(work)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == ('--amp: mixed-precision training (mmengine AmpOptimWrapper, float16 with a '
                    'loss scaler) needs a CUDA GPU and torch sees none. Train without --amp on '
                    'this machine.')
    assert 'Traceback' not in out.stderr
    assert not work.exists()


def test_auto_scale_lr_is_the_lr_of_the_first_step(tmp_path, shapes):
    """base_lr x total batch / base_batch_size: 2e-3 x 2 / 8 at the first optimizer step,
    and the recipe's lr without the flag."""
    with pytest.raises(StopTraining):
        train_main([_config(tmp_path, shapes, 1, stop_after=1), '--auto-scale-lr',
                    '--work-dir', str(tmp_path / 'scaled')])
    assert RecordTraining.seen['lrs'] == [(0, pytest.approx(BASE_LR * 2 / 8, rel=1e-12))]
    with pytest.raises(StopTraining):
        train_main([_config(tmp_path, shapes, 1, stop_after=1, base_batch_size=1),
                    '--auto-scale-lr', '--work-dir', str(tmp_path / 'up')])
    assert RecordTraining.seen['lrs'] == [(0, pytest.approx(BASE_LR * 2, rel=1e-12))]
    with pytest.raises(StopTraining):
        train_main([_config(tmp_path, shapes, 1, stop_after=1), '--work-dir',
                    str(tmp_path / 'plain')])
    assert RecordTraining.seen['lrs'] == [(0, pytest.approx(BASE_LR, rel=1e-12))]


def test_resume_path_takes_that_file_and_the_iterations_go_on(tmp_path, shapes):
    straight = tmp_path / 'straight'
    train_main([_config(tmp_path, shapes, 3), '--auto-scale-lr', '--work-dir', str(straight)])
    assert [i for i, _ in RecordTraining.seen['lrs']] == [0, 1, 2]

    # The work dir already holds a later checkpoint that plain --resume would take.
    work = tmp_path / 'resumed'
    work.mkdir()
    shutil.copy(straight / 'epoch_2.pth', work / 'epoch_2.pth')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    train_main([_config(tmp_path, shapes, 3), '--auto-scale-lr', '--work-dir', str(work),
                '--resume', str(straight / 'epoch_1.pth')])
    it, epoch, start = RecordTraining.seen['start']
    assert (it, epoch) == (1, 1)
    for key, value in safe_torch_load(str(straight / 'epoch_1.pth'))['state_dict'].items():
        assert torch.equal(start[key], value), f'{key} is not the epoch_1 weights'
    # iterations 1 and 2 ran, at the lr scaled once (the optimizer state brings it back)
    assert RecordTraining.seen['lrs'] == [(1, pytest.approx(BASE_LR * 2 / 8, rel=1e-12)),
                                          (2, pytest.approx(BASE_LR * 2 / 8, rel=1e-12))]
    final = safe_torch_load(str(work / 'epoch_3.pth'))
    assert final['meta']['iter'] == 3 and final['meta']['epoch'] == 3
    expected = safe_torch_load(str(straight / 'epoch_3.pth'))['state_dict']
    for key, value in final['state_dict'].items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)

    with pytest.raises(FileNotFoundError, match='--resume checkpoint .*nowhere.pth does not exist'):
        train_main([_config(tmp_path, shapes, 3), '--work-dir', str(work),
                    '--resume', str(tmp_path / 'nowhere.pth')])


# ------------------------------------------------------------------ the SSD schedule
class _Line(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Linear(1, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return {'loss': self.w(torch.stack(inputs)).pow(2).mean()}


def _ssd_lr(i, epoch_len, base=1e-3, end=500, start=0.001, milestones=(16, 20)):
    """SSD's lr at iteration i, by hand: linear warm-up from base x start at iteration 0 to
    base at iteration end - 1 (mmengine's LinearLR: ``end`` is the first iteration it no
    longer changes), times 0.1 for every milestone epoch reached."""
    warm = start + (1 - start) * min(i, end - 1) / (end - 1)
    drops = sum(i // epoch_len >= m for m in milestones)
    return base * warm * 0.1 ** drops


def test_ssd_warmup_and_multistep_schedule_equals_the_formula(tmp_path):
    """configs/_base_/schedules/ssd_sgd_24e.py through mmengine's Runner: warm-up by
    iteration, drops at epochs 16 and 20; with 30 iterations an epoch the warm-up (500
    iterations) is still on at the first drop."""
    schedule = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'schedules',
                                        'ssd_sgd_24e.py'))
    epoch_len, max_epochs = 30, 21
    RecordTraining.seen = dict(lrs=[], start=None)
    runner = Runner(
        model=_Line(), work_dir=str(tmp_path), experiment_name=f'{tmp_path.name}_ssd',
        train_dataloader=dict(dataset=[dict(inputs=torch.ones(1))] * epoch_len, batch_size=1,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=schedule.optim_wrapper, param_scheduler=schedule.param_scheduler,
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=100),
        custom_hooks=[dict(type='RecordTraining')],
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook', interval=1000)),
        default_scope='densebox')
    runner.train()
    lrs = RecordTraining.seen['lrs']
    assert [i for i, _ in lrs] == list(range(epoch_len * max_epochs))
    for i, lr in lrs:
        assert lr == pytest.approx(_ssd_lr(i, epoch_len), rel=1e-9), f'iteration {i}'
    chosen = {0: 1e-6, 1: 1e-3 * (0.001 + 0.999 / 499), 479: 1e-3 * (0.001 + 0.999 * 479 / 499),
              480: 1e-4 * (0.001 + 0.999 * 480 / 499), 499: 1e-4, 599: 1e-4, 600: 1e-5,
              629: 1e-5}
    for i, expected in chosen.items():
        assert lrs[i][1] == pytest.approx(expected, rel=1e-9), f'iteration {i}'

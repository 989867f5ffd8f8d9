"""A NaN / Inf loss stops training (or its step is skipped) before it reaches the weights."""
import math
import os
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from densebox.datasets.shapes import generate_shapes
from densebox.engine import NonFiniteLossError, safe_torch_load
from tiny_train import tiny_det_config


class ToyModel(BaseModel):
    """``loss_main`` is a quadratic in one linear layer; ``loss_aux`` is NaN (or Inf) at the
    1-based training calls listed in ``bad_calls``."""

    def __init__(self, bad_calls=(), bad_value=math.nan):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.bad_calls = set(bad_calls)
        self.bad_value = bad_value
        self.calls = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode != 'loss':
            return out
        self.calls += 1
        aux = out.mean() * 0 + (self.bad_value if self.calls in self.bad_calls else 0.0)
        return {'loss_main': (out ** 2).mean(), 'loss_aux': aux}


class ToyData(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {'inputs': torch.tensor([float(i), 1.0])}


class RecordWeights(Hook):
    def __init__(self):
        self.after = []  # weight after each iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.after.append(runner.model.linear.weight.detach().clone())


def _toy_runner(tmp_path, model, mode='stop', max_consecutive_skips=10, hooks=()):
    return Runner(
        model=model, work_dir=str(tmp_path / 'work'),
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1),
            nonfinite=dict(type='NonFiniteLossHook', mode=mode,
                           max_consecutive_skips=max_consecutive_skips)),
        custom_hooks=list(hooks), default_scope='densebox', experiment_name=tmp_path.name)


@pytest.mark.parametrize('bad_value', [math.nan, math.inf])
def test_stop_names_iteration_and_term_and_takes_no_step(tmp_path, bad_value):
    record = RecordWeights()
    runner = _toy_runner(tmp_path, ToyModel(bad_calls={3}, bad_value=bad_value), hooks=[record])
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 3 (epoch 1, batch 3 of 4)' in message
    assert "'loss_aux'" in message and "'loss_main'" not in message
    assert 'iter_2.pth' in message  # the last good checkpoint, named
    work = tmp_path / 'work'
    assert (work / 'iter_2.pth').is_file() and not (work / 'iter_3.pth').exists()
    # The weights in memory are still those of iteration 2, the same as in the checkpoint.
    weight = runner.model.linear.weight.detach()
    assert torch.equal(weight, record.after[1])
    assert torch.equal(weight, safe_torch_load(str(work / 'iter_2.pth'))['state_dict']['linear.weight'])


def test_skip_drops_the_step_counts_it_and_goes_on(tmp_path):
    record = RecordWeights()
    runner = _toy_runner(tmp_path, ToyModel(bad_calls={3, 6}), mode='skip', hooks=[record])
    runner.train()
    assert len(record.after) == 8  # all 8 iterations ran
    assert torch.equal(record.after[2], record.after[1])  # iteration 3 changed nothing
    assert torch.equal(record.after[5], record.after[4])
    assert not torch.equal(record.after[3], record.after[2])  # the next good step did
    assert all(torch.isfinite(w).all() for w in record.after)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'NonFiniteLossHook')
    assert hook.skipped == 2
    assert runner.message_hub.get_scalar('train/skipped_steps').current() == 2


def test_skip_stops_after_too_many_in_a_row(tmp_path):
    runner = _toy_runner(tmp_path, ToyModel(bad_calls={2, 3, 4}), mode='skip',
                         max_consecutive_skips=3)
    with pytest.raises(NonFiniteLossError, match='iteration 4 .*3 steps in a row'):
        runner.train()
    work = tmp_path / 'work'
    assert not (work / 'iter_4.pth').exists()
    # The skipped steps wrote checkpoints with the weights of iteration 1, unchanged.
    first = safe_torch_load(str(work / 'iter_1.pth'))['state_dict']['linear.weight']
    assert torch.equal(safe_torch_load(str(work / 'iter_3.pth'))['state_dict']['linear.weight'],
                       first)


def test_a_checkpoint_with_non_finite_weights_is_not_written(tmp_path):
    class PoisonWeights(Hook):
        priority = 'NORMAL'  # after the loss check, before CheckpointHook saves

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter == 1:  # the second iteration
                with torch.no_grad():
                    runner.model.linear.weight[0, 0] = math.nan

    runner = _toy_runner(tmp_path, ToyModel(), hooks=[PoisonWeights()])
    with pytest.raises(NonFiniteLossError, match='refusing to write a checkpoint'):
        runner.train()
    written = sorted(f for f in os.listdir(tmp_path / 'work') if f.endswith('.pth'))
    assert written == ['iter_1.pth']
    for name in written:
        state = safe_torch_load(str(tmp_path / 'work' / name))['state_dict']
        assert all(torch.isfinite(v).all() for v in state.values())


def test_a_real_run_with_a_huge_learning_rate_stops(tmp_path):
    """The finding: lr=1e30 on the quickstart SSD trained on and wrote NaN checkpoints."""
    from densebox.cli import train_main
    data = str(tmp_path / 'shapes')
    generate_shapes(data, num_train=8, num_val=2, img_size=(96, 96), seed=3)
    cfg = tiny_det_config(tmp_path / 'cfg.py', data, max_epochs=2,
                          extra="optim_wrapper = dict(optimizer=dict(lr=1e30))\n"
                                "default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1))\n")
    work = tmp_path / 'work'
    with pytest.raises(NonFiniteLossError, match=r"iteration \d+ .*'loss_(cls|bbox)'") as info:
        train_main([cfg, '--work-dir', str(work)])
    written = [f for f in os.listdir(work) if f.endswith('.pth')]
    for name in written:
        ckpt = safe_torch_load(str(work / name))
        assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
                   if v.is_floating_point()), f'{name} holds non-finite weights'
    stopped_at = int(str(info.value).split('iteration ')[1].split()[0])
    assert not osp.exists(work / f'iter_{stopped_at}.pth')

"""Resume is exact: from epoch and iteration checkpoints, in epoch- and iteration-based loops,
with random augmentation, dropout and validation in between (in process, a toy model)."""
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from densebox.engine import safe_torch_load


class NoisyData(torch.utils.data.Dataset):
    """Each item is augmented with numpy, Python and torch random draws."""

    def __init__(self, size=10, noise=True):
        self.size = size
        self.noise = noise
        self.loaded = []  # indices whose data was loaded (__getitem__ ran)

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        self.loaded.append(i)
        noise = np.random.randn(2) * 0.1 + random.random() * 0.1 + torch.rand(2).numpy() * 0.1
        noise = noise if self.noise else np.zeros(2)
        return {'inputs': torch.tensor([float(i) / self.size, 1.0]) + torch.from_numpy(noise).float()}


class DropoutModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.3), nn.Linear(8, 1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.net(torch.stack(inputs))
        if mode == 'loss':
            return {'loss': ((out - 1) ** 2).mean()}
        return [dict(pred=o) for o in out]


class RandomMetric(BaseMetric):
    """Validation that consumes random numbers (it must not change how training goes on)."""

    def process(self, data_batch, data_samples):
        self.results.append(float(np.random.rand() + torch.rand(1).item()))

    def compute_metrics(self, results):
        return dict(score=sum(results))


def _runner(work_dir, loop, resume_from=None, name='run', num_workers=0):
    dataloader = dict(dataset=NoisyData(noise=num_workers == 0), batch_size=3,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      sampler=dict(type='DefaultSampler', shuffle=True),
                      collate_fn=dict(type='pseudo_collate'))
    if loop == 'epoch':
        train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
        checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=-1)
    else:
        dataloader['sampler'] = dict(type='InfiniteSampler', shuffle=True)
        train_cfg = dict(type='IterBasedTrainLoop', max_iters=9, val_interval=4)
        checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=-1)
    return Runner(
        model=DropoutModel(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dataloader,
        val_dataloader=dict(dataset=NoisyData(4), batch_size=2, num_workers=0,
                            sampler=dict(type='DefaultSampler', shuffle=False),
                            collate_fn=dict(type='pseudo_collate')),
        val_evaluator=[RandomMetric()], val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='MultiStepLR', by_epoch=False, milestones=[5], gamma=0.5)],
        train_cfg=train_cfg, default_hooks=dict(checkpoint=checkpoint),
        randomness=dict(seed=1, deterministic=True), default_scope='densebox',
        resume=resume_from is not None, load_from=resume_from)


def _final_state(work_dir, name):
    ckpt = safe_torch_load(osp.join(str(work_dir), name))
    return ckpt['state_dict'], ckpt['optimizer'], ckpt['meta']['iter']


def _assert_same(a, b):
    for (sa, oa, ia), (sb, ob, ib) in [(a, b)]:
        assert ia == ib
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f'{key} differs'
        for param, state in oa['state'].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(ob['state'][param][key])), \
                    f'optimizer state {param}.{key} differs'
        assert oa['param_groups'][0]['lr'] == ob['param_groups'][0]['lr']


@pytest.mark.parametrize('loop,final,resume_points', [
    ('epoch', 'iter_12.pth', ['iter_2.pth', 'iter_4.pth', 'iter_5.pth', 'iter_9.pth']),
    ('iter', 'iter_9.pth', ['iter_3.pth', 'iter_4.pth', 'iter_5.pth']),
])
def test_resume_from_any_checkpoint_matches_the_straight_run(tmp_path, loop, final, resume_points):
    straight = tmp_path / 'straight'
    _runner(straight, loop, name=f'{tmp_path.name}_s').train()
    expected = _final_state(straight, final)
    for point in resume_points:
        work = tmp_path / point
        runner = _runner(work, loop, resume_from=str(straight / point), name=f'{tmp_path.name}_{point}')
        runner.train()
        _assert_same(_final_state(work, final), expected)
        if loop == 'epoch' and point == 'iter_5.pth':
            # epoch 2 resumed after its first batch (3 of its 10 items): those were never
            # loaded; the other 7 and epoch 3's 10 were
            assert len(runner.train_dataloader.dataset.loaded) == 7 + 10


def test_mid_epoch_resume_trains_the_same_number_of_steps(tmp_path):
    """The finding: mmengine re-ran the epoch and ended at iter_14 instead of iter_12."""
    straight = tmp_path / 'straight'
    _runner(straight, 'epoch', name=f'{tmp_path.name}_s').train()
    runner = _runner(tmp_path / 'r', 'epoch', resume_from=str(straight / 'iter_6.pth'),
                     name=f'{tmp_path.name}_r')
    runner.train()
    assert runner.iter == 12 and runner.epoch == 3
    assert not (tmp_path / 'r' / 'iter_13.pth').exists()


def test_a_dangling_last_checkpoint_pointer_resumes_from_the_newest_file(tmp_path):
    """A kill between mmengine deleting an old checkpoint and writing last_checkpoint leaves
    it naming a file that is gone; resume then takes the newest checkpoint there."""
    straight = tmp_path / 'straight'
    _runner(straight, 'epoch', name=f'{tmp_path.name}_s').train()
    work = tmp_path / 'work'
    work.mkdir()
    for name in ('iter_5.pth', 'iter_6.pth'):
        (work / name).write_bytes((straight / name).read_bytes())
    (work / 'last_checkpoint').write_text(str(work / 'iter_7.pth'))  # not there
    runner = _runner(work, 'epoch', name=f'{tmp_path.name}_r')
    runner._resume = True  # --resume without a path
    runner.train()
    assert (work / 'last_checkpoint').read_text().endswith('iter_12.pth')
    _assert_same(_final_state(work, 'iter_12.pth'), _final_state(straight, 'iter_12.pth'))


@pytest.mark.parametrize('loop,final', [('epoch', 'iter_12.pth'), ('iter', 'iter_9.pth')])
def test_resume_with_a_persistent_worker(tmp_path, loop, final):
    """With workers, mmengine's iteration loop had prefetched indices before the resume
    position was known; the sampler starts again, so the order is the uninterrupted run's."""
    straight = tmp_path / 'straight'
    _runner(straight, loop, name=f'{tmp_path.name}_s', num_workers=1).train()
    work = tmp_path / 'r'
    _runner(work, loop, resume_from=str(straight / 'iter_5.pth'), name=f'{tmp_path.name}_r',
            num_workers=1).train()
    _assert_same(_final_state(work, final), _final_state(straight, final))

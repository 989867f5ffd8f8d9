"""densebox's CheckpointHook: arguments checked when built, old checkpoints deleted only after
the new one is written; checkpoint files get plain-file permissions."""
import os
import stat

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

import densebox.engine.checkpoint as ckpt_module
from densebox.engine import atomic_save_checkpoint, remove_stale_temp_files
from densebox.registry import HOOKS


class Quadratic(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        return {'loss': (out ** 2).mean()} if mode == 'loss' else out


def _runner(tmp_path, **checkpoint):
    data = [{'inputs': torch.tensor([float(i), 1.0])} for i in range(4)]
    return Runner(
        model=Quadratic(), work_dir=str(tmp_path / 'work'), experiment_name=tmp_path.name,
        train_dataloader=dict(dataset=data, batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', **checkpoint)),
        default_scope='densebox')


def test_misspelt_argument_fails_when_the_hook_is_built(tmp_path):
    with pytest.raises(TypeError, match="'max_keep_ckpt'.*max_keep_ckpts"):
        HOOKS.build(dict(type='CheckpointHook', interval=1, max_keep_ckpt=3))
    with pytest.raises(TypeError, match='default_hooks.checkpoint.intervall'):
        _runner(tmp_path, intervall=1)  # the Runner builds its hooks before any training


def test_old_checkpoint_is_kept_when_the_new_save_fails(tmp_path, monkeypatch):
    runner = _runner(tmp_path, by_epoch=False, interval=1, max_keep_ckpts=1)
    write = ckpt_module._write_all
    calls = []

    def fail_on_the_third_save(f, data):
        calls.append(1)
        if len(calls) == 3:
            raise OSError('disk full')
        write(f, data)

    monkeypatch.setattr(ckpt_module, '_write_all', fail_on_the_third_save)
    with pytest.raises(OSError, match='disk full'):
        runner.train()
    work = tmp_path / 'work'
    # mmengine deletes iter_2.pth before writing iter_3.pth; densebox only after.
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == ['iter_2.pth']
    assert (work / 'last_checkpoint').read_text().endswith('iter_2.pth')


def test_max_keep_ckpts_still_prunes(tmp_path):
    runner = _runner(tmp_path, by_epoch=False, interval=1, max_keep_ckpts=2)
    runner.train()
    work = tmp_path / 'work'
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == ['iter_3.pth', 'iter_4.pth']
    assert runner.message_hub.get_info('keep_ckpt_ids') == [3, 4]


def test_checkpoint_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_save_checkpoint({'w': torch.zeros(1)}, str(tmp_path / 'a.pth'))
        os.umask(0o002)
        atomic_save_checkpoint({'w': torch.zeros(1)}, str(tmp_path / 'b.pth'))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / 'a.pth').st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / 'b.pth').st_mode) == 0o664


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    host = ckpt_module._host()
    dead = tmp_path / f'.tmp_densebox_{host}_999999999_0123abcd.pth'  # no such pid
    other_host = tmp_path / '.tmp_densebox_elsewhere_1_00ff.pth'
    live = tmp_path / f'.tmp_densebox_{host}_{os.getppid()}_abcd.pth'  # a live process
    foreign = [tmp_path / '.tmp_user.pth', tmp_path / '.tmp_abc123.pth', tmp_path / 'epoch_1.pth']
    for path in [dead, other_host, live, *foreign]:
        path.write_bytes(b'x')
    removed = remove_stale_temp_files(str(tmp_path))
    assert sorted(removed) == sorted([str(dead), str(other_host)])
    assert live.exists() and all(p.exists() for p in foreign)

"""Checkpoints load with weights_only semantics and are written atomically."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

from densebox.engine import atomic_save_checkpoint, safe_torch_load


def _mmengine_like_checkpoint():
    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(np.float64(0.25))
    return dict(meta=dict(epoch=3, iter=120, seed=np.int64(7), hook_msgs=dict(best_score=np.float32(0.9)),
                          dataset_meta=dict(classes=('a', 'b'))),
                state_dict={'w': torch.randn(3, 3)},
                message_hub=dict(log_scalars={'train/loss': buffer}, runtime_info={'iter': 120},
                                 resumed_keys={'iter': True}),
                optimizer={'state': {}, 'param_groups': [{'lr': 0.01}]},
                extra=np.arange(6, dtype=np.float32).reshape(2, 3))


def test_mmengine_checkpoint_loads_weights_only(tmp_path, monkeypatch):
    ckpt = _mmengine_like_checkpoint()
    path = str(tmp_path / 'epoch_1.pth')
    atomic_save_checkpoint(ckpt, path)
    # A fresh process has not yet filled HistoryBuffer's class-level statistics table.
    monkeypatch.setattr(HistoryBuffer, '_statistics_methods', {})
    loaded = _load_checkpoint(path, map_location='cpu')  # mmengine's loader, patched by densebox
    assert torch.equal(loaded['state_dict']['w'], ckpt['state_dict']['w'])
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(0.375)
    assert loaded['meta']['seed'] == 7
    np.testing.assert_array_equal(loaded['extra'], ckpt['extra'])
    assert not [f for f in os.listdir(tmp_path) if f.startswith('.tmp_')]


class _Exploit:
    def __reduce__(self):
        return (os.system, ('touch ' + _Exploit.marker,))


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / 'pwned'
    _Exploit.marker = str(marker)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Exploit()}, path)
    with pytest.raises(RuntimeError, match='weights_only'):
        safe_torch_load(str(path))
    with pytest.raises(RuntimeError, match='evil.pth'):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    class Sneaky:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(Exception, match='__init__'):
        safe_torch_load(str(path))


def test_missing_checkpoint_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _load_checkpoint(str(tmp_path / 'nope.pth'), map_location='cpu')


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = str(tmp_path / 'latest.pth')
    atomic_save_checkpoint({'v': torch.tensor(1)}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError):
        atomic_save_checkpoint({'v': torch.tensor(2)}, path)
    monkeypatch.undo()
    assert safe_torch_load(path)['v'].item() == 1
    assert os.listdir(tmp_path) == ['latest.pth']

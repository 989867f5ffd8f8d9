"""SIGKILL a real training process (during a step, during a checkpoint save, at a random
moment), resume it with --resume each time, and get bitwise the weights and optimizer state
of an uninterrupted run."""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import torch

from densebox.datasets.shapes import generate_shapes
from densebox.engine import safe_torch_load
from tiny_train import ROOT, tiny_det_config

TESTS = osp.dirname(osp.abspath(__file__))
# 8 images, batch 2: 4 iterations an epoch, 2 epochs; a checkpoint every 3 iterations and at
# the end (iter_3 and iter_6 are mid-epoch).
EXTRA = '''
custom_imports = dict(imports=['kill_points'], allow_failed_imports=False)
custom_hooks = [dict(type='KillAt')]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=2, save_best=None))
val_dataloader = None
val_cfg = None
val_evaluator = None
'''


def _train(cfg, work, kill='', resume=False, background=False):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), DENSEBOX_TEST_KILL=kill,
               DENSEBOX_CPU_CONV='aten', DENSEBOX_OPS='torchvision', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir', str(work)]
    if resume:
        cmd.append('--resume')
    log = open(osp.join(str(work), f'run_{len(os.listdir(str(work)))}.log'), 'w')
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(work.parent))
    if background:
        return proc, log.name
    proc.wait(timeout=300)
    return proc.returncode, log.name


def _tail(log):
    return open(log).read()[-3000:]


def _final(work):
    ckpt = safe_torch_load(str(work / 'iter_8.pth'))
    return ckpt['state_dict'], ckpt['optimizer']


def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_weights(tmp_path):
    data = str(tmp_path / 'shapes')
    generate_shapes(data, num_train=8, num_val=2, img_size=(96, 96), seed=3)
    cfg = tiny_det_config(tmp_path / 'cfg.py', data, max_epochs=2, extra=EXTRA)

    straight = tmp_path / 'straight'
    os.makedirs(straight)
    straight_proc, straight_log = _train(cfg, straight, background=True)  # runs alongside

    work = tmp_path / 'killed'
    os.makedirs(work)
    # 1. killed as iteration 5 starts: iter_3.pth (mid-epoch 1) is the latest checkpoint
    code, log = _train(cfg, work, kill='step:5')
    assert code == -signal.SIGKILL, _tail(log)
    assert (work / 'iter_3.pth').is_file() and not (work / 'iter_6.pth').exists()

    # 2. resumed, then killed half-way through writing iter_6.pth
    code, log = _train(cfg, work, kill='save:6', resume=True)
    assert code == -signal.SIGKILL, _tail(log)
    temps = [f for f in os.listdir(work) if f.startswith('.tmp_')]
    assert len(temps) == 1 and not (work / 'iter_6.pth').exists()

    # 3. resumed (the half-written file is removed), killed at a random moment after it
    #    has trained past iteration 4
    seed = random.randrange(1000)
    proc, log = _train(cfg, work, resume=True, background=True)
    deadline = time.time() + 240
    while 'Epoch(train) [2][1/4]' not in open(log).read() and proc.poll() is None:
        assert time.time() < deadline, _tail(log)
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert 'left by a checkpoint save that was killed' in open(log).read(), _tail(log)
    assert not [f for f in os.listdir(work) if f.startswith('.tmp_') and f in temps]

    # 4. resumed to the end
    code, log = _train(cfg, work, resume=True)
    assert code == 0, _tail(log)
    assert 'resuming' in open(log).read()

    assert straight_proc.wait(timeout=300) == 0, _tail(straight_log)
    state, optimizer = _final(work)
    expected_state, expected_optimizer = _final(straight)
    for key, value in expected_state.items():
        assert torch.equal(state[key], value), f'{key} differs (random kill seed {seed})'
    for param, param_state in expected_optimizer['state'].items():
        for key, value in param_state.items():
            assert torch.equal(torch.as_tensor(optimizer['state'][param][key]),
                               torch.as_tensor(value)), f'optimizer {param}.{key} differs'
    assert optimizer['param_groups'][0]['lr'] == expected_optimizer['param_groups'][0]['lr']
    assert not [f for f in os.listdir(work) if f.startswith('.tmp_')]
    mode = os.stat(work / 'iter_8.pth').st_mode & 0o777
    assert mode == 0o666 & ~_umask(), oct(mode)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask

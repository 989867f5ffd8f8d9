"""Two processes on the CPU: ``torchrun --nproc_per_node 2 tools/train.py CFG --launcher
pytorch`` trains on disjoint shards with gloo, only rank 0 writes, and the metric gathered
from both equals one process's on the same checkpoint."""
import collections
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from densebox.cli import test_main as run_test
from densebox.datasets.shapes import generate_shapes
from tiny_train import ROOT

TESTS = osp.dirname(osp.abspath(__file__))


def _seg_config(path, data_root):
    data_root = data_root.rstrip('/') + '/'
    path.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'quickstart_seg_shapes.py')!r}]
custom_imports = dict(imports=['dist_probe'], allow_failed_imports=False)
custom_hooks = [dict(type='ProbeRanks')]
data_root = {data_root!r}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=dict(data_root=data_root, generate=False, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, generate=False))
test_dataloader = val_dataloader
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=4)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(by_epoch=False, interval=4, save_best=None))
randomness = dict(seed=0, deterministic=True)
''')
    return str(path)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_cpu_processes_with_torchrun(tmp_path):
    data = str(tmp_path / 'shapes')
    generate_shapes(data, num_train=8, num_val=5, img_size=(96, 96), seed=1)  # 5: uneven shards
    cfg = _seg_config(tmp_path / 'cfg.py', data)
    work, probe = tmp_path / 'work', tmp_path / 'probe'
    probe.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), CUDA_VISIBLE_DEVICES='',
               DENSEBOX_TEST_PROBE=str(probe), DENSEBOX_CPU_CONV='aten', DENSEBOX_OPS='torchvision',
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()),
           osp.join(ROOT, 'tools', 'train.py'), cfg, '--launcher', 'pytorch', '--work-dir', str(work)]
    result = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert 'uses the gloo backend' in output

    # Disjoint shards: in each iteration the two ranks trained on different images, and the
    # 8 images of an epoch (iterations 0-1 and 2-3, batch 2 on each rank) were all seen once.
    seen = {}
    for rank in (0, 1):
        lines = (probe / f'rank{rank}_train.txt').read_text().split('\n')
        seen[rank] = [tuple(line.split()) for line in lines if line]
    assert len(seen[0]) == len(seen[1]) == 8
    for epoch_iters in ({'0', '1'}, {'2', '3'}):
        images = [path for rank in (0, 1) for it, path in seen[rank] if it in epoch_iters]
        assert len(images) == len(set(images)) == 8
    # Only rank 0 wrote checkpoints, logs and the config dump.
    files = [osp.relpath(osp.join(d, f), work) for d, _, names in os.walk(work) for f in names]
    assert 'iter_4.pth' in files
    assert not [f for f in files if 'rank1' in f or 'rank_1' in f], files
    assert collections.Counter(osp.splitext(f)[1] for f in files)['.log'] == 1, files

    gathered = json.loads((probe / 'rank0_metrics.json').read_text())
    assert gathered['world_size'] == 2 and gathered['backend'] == 'gloo'
    single = run_test([cfg, str(work / 'iter_4.pth'), '--work-dir', str(tmp_path / 'single')])
    assert set(gathered['metrics']) == set(single)
    for key, value in single.items():
        assert gathered['metrics'][key] == value, key
    assert 0 < single['mIoU'] <= 100


def test_iou_metric_drops_the_samples_a_distributed_sampler_pads():
    """mmengine removes padded samples by counting results (one per sample); a metric that
    kept one result per batch counted the padded duplicate in a 2-process evaluation."""
    from mmengine.evaluator import Evaluator
    from mmengine.structures import PixelData

    from densebox.evaluation import IoUMetric
    from densebox.structures import SegDataSample

    def sample(value):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.zeros(1, 4, 4, dtype=torch.int64))
        s.pred_sem_seg = PixelData(data=torch.full((1, 4, 4), value, dtype=torch.int64))
        return s

    def evaluate(batches, size):
        evaluator = Evaluator(IoUMetric())
        evaluator.dataset_meta = dict(classes=('a', 'b'))
        for batch in batches:
            evaluator.process([sample(v) for v in batch])
        return evaluator.evaluate(size)

    exact = evaluate([[0, 1], [0]], size=3)  # 2 of 3 images right
    padded = evaluate([[0, 1], [0, 1]], size=3)  # the last 1 is a padded repeat
    assert exact['aAcc'] == pytest.approx(200 / 3)
    assert padded == exact

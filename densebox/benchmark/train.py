"""SSD300 training-step speed: densebox against torchvision's ``ssd300_vgg16``, same batch,
same weights, one run.

Both start from IDENTICAL weights (a random torchvision model and its conversion, as in
:mod:`densebox.benchmark.e2e`) and take the same batch: ``batch`` random 300 x 300 uint8
RGB images (so torchvision's own resize to 300 x 300 is the identity) with 1 to 6 random
boxes each, labelled with COCO categories (0-based for densebox, COCO ids for
torchvision). One timed step, pipeline excluded:

* densebox: ``model.data_preprocessor`` (upload, normalise, stack), ``model(...,
  mode='loss')`` (network, matching, hard negative mining, loss), the sum of the losses,
  ``backward``, ``optimizer.step``, ``zero_grad``; the model set up as ``densebox train``
  sets it up (:func:`densebox.ops.speed_up_cpu_training`: on the CPU each conv runs in
  the memory layout it was timed fastest in; ``cpu_fast_paths=False`` turns that off; the
  untimed warm-up step does the timing);
* torchvision: images to float [0, 1] on the device, ``model(images, targets)`` (its
  transform normalises and resizes, network, matching, mining, loss), the sum,
  ``backward``, ``optimizer.step``, ``zero_grad``.

Both use SGD (lr 1e-4, momentum 0.9, weight decay 5e-4; random weights diverge at 1e-3). Options: ``amp`` (autocast:
float16 with a GradScaler on CUDA, bfloat16 on the CPU) and ``channels_last`` (weights and
input batch in channels-last memory format). The losses are checked equal before timing:
:func:`compare_losses` runs one step of each from the same weights and compares the
classification and box losses (relative 1e-5), and again after that step (1e-3: the
updated weights must still agree).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .e2e import densebox_from_torchvision, environment, random_torchvision_ssd300

IMPLS = ('densebox', 'torchvision')


def random_batch(batch: int, seed: int = 0, size: int = 300) -> List[dict]:
    """``batch`` dicts: ``image`` (size, size, 3) uint8 RGB, ``boxes`` (n, 4) float32 xyxy
    pixels (n in 1..6, sides 20 to 260 px), ``labels`` (n,) int64 in 0..79."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batch):
        n = int(rng.integers(1, 7))
        wh = rng.uniform(20, size * 0.85, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * (size - wh)
        out.append(dict(image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                        boxes=np.concatenate([xy, xy + wh], 1).astype(np.float32),
                        labels=rng.integers(0, 80, n).astype(np.int64)))
    return out


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


class _Step:
    """Shared: SGD, optional GradScaler (CUDA AMP), the backward-and-step part."""

    def __init__(self, model: torch.nn.Module, amp: bool, channels_last: bool):
        self.model = model.train()
        self.device = next(model.parameters()).device
        self.amp = amp
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9,
                                         weight_decay=5e-4)
        self.scaler = (torch.amp.GradScaler('cuda') if amp and self.device.type == 'cuda'
                       else None)

    def losses(self, batch: List[dict]) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, batch: List[dict]) -> Dict[str, torch.Tensor]:
        with _autocast(self.device, self.amp):
            losses = self.losses(batch)
        loss = sum(losses.values())
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {k: v.detach() for k, v in losses.items()}


class DenseboxTrainStep(_Step):
    """One densebox training step; ``losses`` are ``loss_cls`` and ``loss_bbox``.

    ``cpu_fast_paths``: as ``densebox train`` sets the model up,
    :func:`densebox.ops.speed_up_cpu_training` (each conv's input layout chosen for CPU
    training; nothing changes on a GPU)."""

    def __init__(self, model, amp: bool = False, channels_last: bool = False,
                 cpu_fast_paths: bool = True):
        super().__init__(model, amp, channels_last)
        model.data_preprocessor.channels_last = channels_last
        if cpu_fast_paths:
            from densebox.ops import speed_up_cpu_training
            speed_up_cpu_training(model)

    def losses(self, batch: List[dict]) -> Dict[str, torch.Tensor]:
        from mmengine.structures import InstanceData

        from densebox.structures import DetDataSample
        inputs, samples = [], []
        for item in batch:
            h, w = item['image'].shape[:2]
            inputs.append(torch.from_numpy(item['image']).permute(2, 0, 1))
            sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                                 scale_factor=(1.0, 1.0)))
            sample.gt_instances = InstanceData(bboxes=torch.from_numpy(item['boxes']),
                                               labels=torch.from_numpy(item['labels']))
            samples.append(sample)
        data = self.model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
        return self.model(**data, mode='loss')


class TorchvisionTrainStep(_Step):
    """One torchvision training step; ``losses`` are ``classification`` and
    ``bbox_regression``. Labels become COCO category ids."""

    def losses(self, batch: List[dict]) -> Dict[str, torch.Tensor]:
        from densebox.converters import COCO_CATEGORY_IDS
        cat_ids = torch.tensor(COCO_CATEGORY_IDS)
        images, targets = [], []
        for item in batch:
            image = torch.from_numpy(item['image']).to(self.device, non_blocking=True)
            images.append(image.permute(2, 0, 1).float().div_(255))
            targets.append(dict(boxes=torch.from_numpy(item['boxes']).to(self.device),
                                labels=cat_ids[torch.from_numpy(item['labels'])].to(self.device)))
        # channels_last: only the weights (set in __init__). torchvision takes (3, H, W)
        # images, which have no channels-last format, and batches them into a new contiguous
        # tensor; a conv with channels-last weights then computes and returns channels-last.
        return self.model(images, targets)


def share_default_boxes(tv_model: torch.nn.Module, db_model: torch.nn.Module,
                        size: int = 300) -> torch.Tensor:
    """Give densebox's head torchvision's own (A, 4) default boxes for ``size`` x ``size``
    inputs, and return them.

    The two libraries' boxes agree to about 3e-5 px (densebox computes them in float64,
    torchvision in float32), and that is enough to flip exact IoU ties: an object that
    fully contains two default boxes of one size has the same IoU with both, and which one
    becomes its forced best match then depends on the last bit. With the same tensor the
    matching, and so the losses, are the same computation in both.
    """
    from torchvision.models.detection.image_list import ImageList
    device = next(tv_model.parameters()).device
    with torch.no_grad():
        images = torch.zeros(1, 3, size, size, device=device)
        feats = list(tv_model.backbone(images).values())
        boxes = tv_model.anchor_generator(ImageList(images, [(size, size)]), feats)[0]
        db_feats = db_model.extract_feat(images.to(next(db_model.parameters()).device))
    generator = db_model.bbox_head.anchor_generator
    key = (tuple(tuple(f.shape[-2:]) for f in db_feats), str(db_feats[0].device))
    if generator.grid_anchors([f.shape[-2:] for f in db_feats], db_feats[0].device).shape \
            != boxes.shape:
        raise ValueError('share_default_boxes: the models have different default boxes')
    generator._cache[key] = boxes.to(db_feats[0].device)
    return boxes


def build_pair(seed: int = 0, device: str = 'cpu', amp: bool = False,
               channels_last: bool = False, config: Optional[str] = None,
               cpu_fast_paths: bool = True) -> dict:
    """``{'densebox': DenseboxTrainStep, 'torchvision': TorchvisionTrainStep}`` holding the
    same random weights (and default boxes, :func:`share_default_boxes`) on ``device``."""
    tv = random_torchvision_ssd300(seed).to(device)
    db, _ = densebox_from_torchvision(tv.cpu(), config)
    db.bbox_head.matcher.bipartite = False  # torchvision's matching, for the same arithmetic
    tv, db = tv.to(device), db.to(device)
    share_default_boxes(tv, db)
    return dict(densebox=DenseboxTrainStep(db, amp, channels_last, cpu_fast_paths),
                torchvision=TorchvisionTrainStep(tv, amp, channels_last))


def compare_losses(seed: int = 0, batch: int = 2, device: str = 'cpu',
                   rtol: Sequence[float] = (1e-5, 1e-3), config: Optional[str] = None,
                   cpu_fast_paths: bool = True) -> dict:
    """One step of each from the same weights on the same batch, twice (the second step
    from the weights the first one made).

    Returns ``{'steps': [{'densebox': {...}, 'torchvision': {...}}, ...], 'equal': bool,
    'max_rel_diff': [first, second]}``. ``equal`` when every loss of step i agrees within
    ``rtol[i]``: from identical weights the losses are one computation up to float32
    summation order; after one update the weights differ by the rounding of two backward
    passes (the input normalisation alone rounds differently), which the steep first step
    of a random network amplifies to about 1e-4. fp32, NCHW.
    """
    steps = build_pair(seed, device, config=config, cpu_fast_paths=cpu_fast_paths)
    data = random_batch(batch, seed)
    records, worst = [], []
    for _ in range(2):
        db = {k: float(v) for k, v in steps['densebox'](data).items()}
        tv = {k: float(v) for k, v in steps['torchvision'](data).items()}
        worst.append(max(abs(db[ours] - tv[theirs]) / max(abs(tv[theirs]), 1e-12)
                         for ours, theirs in (('loss_cls', 'classification'),
                                              ('loss_bbox', 'bbox_regression'))))
        records.append(dict(densebox=db, torchvision=tv))
    return dict(steps=records, equal=all(w <= r for w, r in zip(worst, rtol)),
                max_rel_diff=worst)


def run_train_benchmark(devices: Sequence[str] = ('cpu',), batch_sizes: Sequence[int] = (4,),
                        amp_modes: Sequence[bool] = (False,),
                        channels_last_modes: Sequence[bool] = (False,), iters: int = 3,
                        warmup: int = 1, repeats: int = 3, seed: int = 0,
                        config: Optional[str] = None, cpu_fast_paths: bool = True,
                        log: Callable[[str], None] = print) -> dict:
    """Time the two training steps alternately.

    For each device / AMP / channels-last / batch case both sides are built from the same
    weights; ``repeats`` times each runs ``warmup`` untimed steps and ``iters`` timed ones
    (ending synchronised: the losses are read on the host). The rate of a repeat is
    ``batch * iters / seconds``; the table shows the median.
    Before timing, :func:`compare_losses` checks that the two compute the same losses.

    Returns ``{'env', 'settings', 'loss_check', 'results': [entry, ...]}`` with one entry
    per (impl, device, batch, amp, channels_last): ``img_per_s`` (median),
    ``img_per_s_repeats``, ``seconds_per_step`` (median) and ``error``.
    """
    check = compare_losses(seed, 2, devices[0], config=config, cpu_fast_paths=cpu_fast_paths)
    log(f"loss check (same weights, same batch): equal={check['equal']}, largest relative "
        f"difference {check['max_rel_diff'][0]:.1e} (first step), "
        f"{check['max_rel_diff'][1]:.1e} (after one update)")
    out = dict(env=environment(devices[0]),
               settings=dict(devices=list(devices), batch_sizes=list(batch_sizes),
                             amp=list(amp_modes), channels_last=list(channels_last_modes),
                             iters=iters, warmup=warmup, repeats=repeats, seed=seed,
                             cpu_fast_paths=cpu_fast_paths),
               loss_check=check, results=[])
    for device in devices:
        if device.startswith('cuda') and 'gpu' not in out['env']:
            out['env']['gpu'] = torch.cuda.get_device_name(torch.device(device))
        for amp in amp_modes:
            for channels_last in channels_last_modes:
                for batch in batch_sizes:
                    out['results'] += _time_case(device, batch, amp, channels_last, iters,
                                                 warmup, repeats, seed, config, cpu_fast_paths)
                    log(format_train_table(out['results'][-2:], header=False))
    return out


def _time_case(device, batch, amp, channels_last, iters, warmup, repeats, seed, config,
               cpu_fast_paths):
    errors: Dict[str, Optional[str]] = {k: None for k in IMPLS}
    try:
        steps = build_pair(seed, device, amp, channels_last, config, cpu_fast_paths)
    except Exception as err:  # e.g. no CUDA
        steps, errors = {}, {k: f'{type(err).__name__}: {err}' for k in IMPLS}
    data = random_batch(batch, seed + 1)
    rates: Dict[str, List[float]] = {k: [] for k in IMPLS}
    secs: Dict[str, List[float]] = {k: [] for k in IMPLS}
    for _ in range(repeats):
        for impl in IMPLS:
            if errors[impl]:
                continue
            try:
                seconds = _time_steps(steps[impl], data, iters, warmup)
            except Exception as err:  # e.g. an op without a bfloat16 kernel
                errors[impl] = f'{type(err).__name__}: {err}'
                continue
            rates[impl].append(batch * iters / sum(seconds))
            secs[impl].append(statistics.median(seconds))
    return [dict(impl=impl, device=device, batch=batch, amp=amp, channels_last=channels_last,
                 img_per_s=statistics.median(rates[impl]) if rates[impl] else None,
                 img_per_s_repeats=rates[impl],
                 seconds_per_step=statistics.median(secs[impl]) if secs[impl] else None,
                 error=errors[impl]) for impl in IMPLS]


def _time_steps(step: _Step, data: List[dict], iters: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        [float(v) for v in step(data).values()]
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        [float(v) for v in step(data).values()]  # host read: the step has finished
        seconds.append(time.perf_counter() - start)
    return seconds


def format_train_table(results: Sequence[dict], header: bool = True) -> str:
    """Text table: device, batch, amp, channels-last, img/s of each, densebox / torchvision."""
    rows: Dict[tuple, dict] = {}
    for e in results:
        key = (e['device'], e['batch'], e['amp'], e['channels_last'])
        row = rows.setdefault(key, dict(zip(('device', 'batch', 'amp', 'cl'), key)))
        row[e['impl']] = e['img_per_s']
        if e.get('error'):
            row.setdefault('errors', []).append(f"{e['impl']}: {e['error']}")

    def num(x, fmt):
        return format(x, fmt) if x is not None else 'n/a'
    lines = []
    if header:
        lines.append(f"{'device':<8}{'batch':>6}{'amp':>6}{'ch_last':>8}{'densebox img/s':>16}"
                     f"{'torchvision img/s':>19}{'ratio':>8}")
    for row in rows.values():
        db, tv = row.get('densebox'), row.get('torchvision')
        ratio = db / tv if db and tv else None
        lines.append(f"{row['device']:<8}{row['batch']:>6}{str(row['amp']):>6}"
                     f"{str(row['cl']):>8}{num(db, '.3f'):>16}{num(tv, '.3f'):>19}"
                     f"{num(ratio, '.2f'):>8}")
        for err in row.get('errors', []):
            lines.append(f'    error {err}')
    return '\n'.join(lines)


__all__ = ['random_batch', 'DenseboxTrainStep', 'TorchvisionTrainStep', 'build_pair',
           'compare_losses', 'run_train_benchmark', 'format_train_table']

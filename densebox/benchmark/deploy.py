"""CPU deployment: densebox eager against its own ONNX export in onnxruntime and in OpenVINO,
same weights, same images, same detections, one run.

The model is SSD300 with the identical random weights of :mod:`densebox.benchmark.e2e`
(torchvision's ``ssd300_vgg16`` converted into ``configs/ssd300_coco_torchvision.py``).
Each backend is what :func:`densebox.init_model` builds for ``backend=...`` and one timed
call is :func:`densebox.inference` on a batch of host uint8 images (default 375 x 500),
from the test pipeline to :class:`~densebox.apis.DetResult` objects in original-image
pixels:

* ``torch``: the eager model (CPU fast paths on, as ``init_model`` sets them);
* ``onnxruntime`` / ``openvino``: :class:`densebox.deploy.OnnxDetector` on the model's
  export (float32 in both);
* ``auto``: :class:`densebox.deploy.AutoBackend`, which times the three on its first call
  and keeps the fastest (its ``first_call_s`` is that one-off cost; ``chosen`` says which).

Backends take turns, ``repeats`` times (``warmup`` untimed calls, then ``iters`` timed
ones); medians. The one-off first-call costs are reported apart: the eager model's first
call (CPU kernel timing) and each runtime's export + compile (``setup_seconds``). Each
runtime's detections are matched against eager's: ``same_detections`` is the fraction of
eager detections with a twin (same label, score within 1e-5, box within 1e-3 px).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .e2e import densebox_from_torchvision, environment, random_images, random_torchvision_ssd300

BACKENDS = ('torch', 'onnxruntime', 'openvino', 'auto')


def matched_fraction(got, ref, score_tol: float = 1e-5, box_tol: float = 1e-3) -> float:
    """Fraction of ``ref``'s detections that have a twin in ``got`` (label equal, score and
    box within the tolerances), each twin used once; 1.0 for two empty results."""
    if len(ref) == 0:
        return 1.0 if len(got) == 0 else 0.0
    used = np.zeros(len(got), bool)
    found = 0
    for box, score, label in zip(ref.boxes, ref.scores, ref.labels):
        hit = np.flatnonzero(~used & (got.labels == label)
                             & (np.abs(got.scores - score) <= score_tol)
                             & (np.abs(got.boxes - box).max(1) <= box_tol))
        if len(hit):
            used[hit[0]] = True
            found += 1
    return found / max(len(ref), len(got))


def build_backends(backends: Sequence[str], seed: int = 0, config: Optional[str] = None,
                   cpu_fast_paths: bool = True, model=None) -> dict:
    """``{backend: model or runner (None when not installed)}`` sharing one set of weights,
    each usable with :func:`densebox.inference` (``cfg`` and ``dataset_meta`` attached as
    :func:`densebox.init_model` attaches them). ``model``: another detector from
    :func:`densebox.init_model` instead of SSD300 (e.g. a small one for tests)."""
    from densebox.config import dataset_meta_from_config
    from densebox.deploy.runtime import OnnxDetector, runtime_available
    from densebox.ops import speed_up_cpu_inference
    if model is None:
        model, cfg = densebox_from_torchvision(random_torchvision_ssd300(seed), config)
        model.cfg = cfg
        model.dataset_meta = dataset_meta_from_config(cfg)
    if cpu_fast_paths:
        speed_up_cpu_inference(model)
    from densebox.deploy.runtime import AutoBackend
    out = {}
    for name in backends:
        if name == 'torch':
            out[name] = model
        elif name == 'auto':
            out[name] = AutoBackend(model, log=lambda line: None)
        else:
            out[name] = OnnxDetector.from_model(model, name) if runtime_available(name) else None
    return out


def run_deploy_benchmark(backends: Sequence[str] = BACKENDS, batch_sizes: Sequence[int] = (1,),
                         iters: int = 5, warmup: int = 1, repeats: int = 3,
                         image_hw: Sequence[int] = (375, 500), seed: int = 0,
                         config: Optional[str] = None, cpu_fast_paths: bool = True,
                         model=None, log: Callable[[str], None] = print) -> dict:
    """See the module docstring. Returns ``{'env', 'settings', 'results': [...]}`` with one
    entry per (backend, batch): ``img_per_s`` (median), ``img_per_s_repeats``,
    ``first_call_s``, ``setup_s``, ``same_detections`` and ``error``."""
    from densebox.apis import inference
    if 'torch' not in backends:
        raise ValueError("the deploy benchmark needs the 'torch' backend (the reference)")
    runners = build_backends(backends, seed, config, cpu_fast_paths, model)
    out = dict(env=environment('cpu'),
               settings=dict(backends=list(backends), batch_sizes=list(batch_sizes), iters=iters,
                             warmup=warmup, repeats=repeats, image_hw=list(image_hw), seed=seed,
                             cpu_fast_paths=cpu_fast_paths),
               results=[])
    for mod in ('onnxruntime', 'openvino'):
        try:
            out['env'][mod] = __import__(mod).__version__
        except ImportError:
            out['env'][mod] = None
    for batch in batch_sizes:
        images = random_images(batch, *image_hw, seed=seed)
        first: Dict[str, float] = {}
        rates: Dict[str, List[float]] = {n: [] for n in runners}
        last: Dict[str, list] = {}
        errors = {n: (None if r is not None else f'{n} is not installed')
                  for n, r in runners.items()}
        for name, runner in runners.items():  # one-off costs, apart from the timing
            if errors[name]:
                continue
            start = time.perf_counter()
            last[name] = inference(images, runner, batch_size=batch, keep_image=False)
            first[name] = time.perf_counter() - start
        for _ in range(repeats):
            for name, runner in runners.items():
                if errors[name]:
                    continue
                with torch.inference_mode():
                    for _ in range(warmup):
                        inference(images, runner, batch_size=batch, keep_image=False)
                    seconds = 0.0
                    for _ in range(iters):
                        start = time.perf_counter()
                        last[name] = inference(images, runner, batch_size=batch,
                                               keep_image=False)
                        seconds += time.perf_counter() - start
                rates[name].append(batch * iters / seconds)
        for name, runner in runners.items():
            same = None
            if name in last and 'torch' in last:
                same = float(np.mean([matched_fraction(g, r)
                                      for g, r in zip(last[name], last['torch'])]))
            out['results'].append(dict(
                backend=name, batch=batch,
                img_per_s=statistics.median(rates[name]) if rates[name] else None,
                img_per_s_repeats=rates[name], first_call_s=first.get(name),
                setup_s=getattr(runner, 'setup_seconds', None) if runner is not None else None,
                chosen=getattr(runner, 'chosen', None),
                detections_per_image=(float(np.mean([len(r) for r in last[name]]))
                                      if name in last else None),
                same_detections=same, error=errors[name]))
        log(format_deploy_table(out['results'][-len(runners):], header=False))
    return out


def format_deploy_table(results: Sequence[dict], header: bool = True) -> str:
    def num(x, fmt):
        return format(x, fmt) if x is not None else 'n/a'
    lines = []
    if header:
        lines.append(f"{'backend':<13}{'batch':>6}{'img/s':>9}{'vs torch':>10}"
                     f"{'first call s':>14}{'export+compile s':>18}{'same dets':>11}")
    torch_rate = {r['batch']: r['img_per_s'] for r in results if r['backend'] == 'torch'}
    for r in results:
        if r['error']:
            lines.append(f"{r['backend']:<13}{r['batch']:>6}  {r['error']}")
            continue
        base = torch_rate.get(r['batch'])
        ratio = r['img_per_s'] / base if base and r['img_per_s'] else None
        lines.append(f"{r['backend']:<13}{r['batch']:>6}{num(r['img_per_s'], '.3f'):>9}"
                     f"{num(ratio, '.2f'):>10}{num(r['first_call_s'], '.1f'):>14}"
                     f"{num(r['setup_s'], '.1f'):>18}{num(r['same_detections'], '.3f'):>11}")
    return '\n'.join(lines)


__all__ = ['BACKENDS', 'build_backends', 'matched_fraction', 'run_deploy_benchmark',
           'format_deploy_table']

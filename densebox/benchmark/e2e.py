"""End-to-end SSD300 inference speed: densebox against torchvision, same weights, one run.

Both detectors get IDENTICAL weights: a randomly initialised torchvision ``ssd300_vgg16``
and its conversion by :func:`densebox.converters.convert_torchvision_ssd300`, loaded into a
model built from ``configs/ssd300_coco_torchvision.py``. The ten COCO ids torchvision
predicts but COCO never uses get a logit of -1e4 (weight 0, bias -1e4), so torchvision's
91-way softmax and densebox's 81-way one give the same scores and both post-processors see
the same load.

What one timed call covers, from host uint8 (H, W, 3) RGB images to results on the host:

* densebox: the config's test pipeline (LoadImageFromFile on the in-memory array, Resize
  to 300x300, LoadAnnotations, PackDetInputs), ``model.data_preprocessor`` (upload,
  normalise, stack), ``model(..., mode='predict')``, then ``.cpu()`` of every image's
  boxes / scores / labels. The model is prepared as :func:`densebox.init_model` prepares
  it: on the CPU its 3x3 convs pick ATen's or NNPACK's kernel per input size and its 2x2
  max-pools run as strided maxima (:func:`densebox.ops.speed_up_cpu_inference`; the untimed
  warm-up call does the kernel timing), unless ``cpu_fast_paths=False``;
* torchvision: each image uploaded as uint8, turned into the float (3, H, W) tensor in
  [0, 1] its API takes (on the device), ``model(images)`` (its GeneralizedRCNNTransform
  normalises and resizes, the head post-processes), then ``.cpu()`` of the outputs.

AMP is ``torch.autocast`` (float16 on CUDA, bfloat16 on the CPU) around that whole call.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from densebox.ops import backend, speed_up_cpu_inference
from densebox.ops.conv import cpu_conv_mode, cpu_name, nnpack_available

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / 'configs' / 'ssd300_coco_torchvision.py'
IMPLS = ('densebox', 'torchvision')
Images = List[np.ndarray]
Results = List[Dict[str, Tensor]]


def random_torchvision_ssd300(seed: int = 0, cls_scale: float = 1.0,
                              reg_scale: float = 1.0) -> torch.nn.Module:
    """torchvision's ``ssd300_vgg16`` (91 COCO logits) with random weights, in eval mode.

    Args:
        seed: torch seed for its default initialisation.
        cls_scale / reg_scale: factors on the class / box head weights (1: torchvision's
            own Xavier init).
    The unused COCO category ids get weight 0 and bias -1e4, i.e. probability 0.
    """
    import torchvision

    from densebox.converters import COCO_CATEGORY_IDS, TORCHVISION_NUM_LOGITS
    unused = sorted(set(range(1, TORCHVISION_NUM_LOGITS)) - set(COCO_CATEGORY_IDS))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
    with torch.no_grad():
        for conv in model.head.classification_head.module_list:
            conv.weight.mul_(cls_scale)
            weight = conv.weight.view(-1, TORCHVISION_NUM_LOGITS, *conv.weight.shape[1:])
            bias = conv.bias.view(-1, TORCHVISION_NUM_LOGITS)
            weight[:, unused] = 0
            bias[:, unused] = -1e4
        for conv in model.head.regression_head.module_list:
            conv.weight.mul_(reg_scale)
    return model.eval()


def densebox_from_torchvision(tv_model: torch.nn.Module, config: Optional[str] = None):
    """(densebox model in eval mode, its Config) holding ``tv_model``'s converted weights."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import densebox.models  # noqa: F401  (registers the model classes)
    from densebox.converters import convert_torchvision_ssd300
    from densebox.registry import MODELS
    init_default_scope('densebox')
    cfg = Config.fromfile(str(config or DEFAULT_CONFIG))
    model = MODELS.build(cfg.model)
    model.load_state_dict(convert_torchvision_ssd300(tv_model.state_dict())['state_dict'])
    return model.eval(), cfg


class DenseboxSSD:
    """Host images -> host results through densebox's test pipeline, preprocessor and head.

    ``__call__(images)`` takes a list of (H, W, 3) uint8 RGB arrays and returns one dict per
    image with ``boxes`` (K, 4) in input pixels, ``scores`` (K,) and ``labels`` (K,) (0-based
    densebox labels), all on the CPU.
    """

    def __init__(self, model: torch.nn.Module, cfg):
        from mmengine.dataset import Compose

        import densebox.datasets.transforms  # noqa: F401  (registers the transforms)
        self.model = model
        self.pipeline = Compose(cfg.test_dataloader.dataset.pipeline)

    def __call__(self, images: Images) -> Results:
        packed = [self.pipeline(dict(img=img, img_path=None, img_id=i))
                  for i, img in enumerate(images)]
        data = self.model.data_preprocessor(
            dict(inputs=[p['inputs'] for p in packed],
                 data_samples=[p['data_samples'] for p in packed]), False)
        samples = self.model(**data, mode='predict')
        return [dict(boxes=s.pred_instances.bboxes.cpu(), scores=s.pred_instances.scores.cpu(),
                     labels=s.pred_instances.labels.cpu()) for s in samples]


class TorchvisionSSD:
    """Host images -> host results through torchvision's SSD as its API expects.

    Each (H, W, 3) uint8 array goes to the device as uint8 and becomes a float (3, H, W)
    tensor in [0, 1] there; results as torchvision returns them (labels are COCO category
    ids), on the CPU.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = next(model.parameters()).device

    def __call__(self, images: Images) -> Results:
        tensors = [torch.from_numpy(img).to(self.device, non_blocking=True).permute(2, 0, 1)
                   .float().div_(255) for img in images]
        return [{k: v.cpu() for k, v in out.items()} for out in self.model(tensors)]


def random_images(batch: int, height: int, width: int, seed: int = 0) -> Images:
    """``batch`` random (height, width, 3) uint8 RGB arrays."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(batch)]


def _autocast(device: str, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.startswith('cuda') else torch.bfloat16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def time_calls(fn: Callable[[Images], Results], images: Images, iters: int, warmup: int,
               device: str, amp: bool) -> tuple:
    """Seconds of each of ``iters`` calls ``fn(images)`` after ``warmup`` untimed ones, and
    the last call's results. Results are on the host, so every timed call ends synchronised."""
    results = None
    with torch.inference_mode(), _autocast(device, amp):
        for _ in range(warmup):
            results = fn(images)
        seconds = []
        for _ in range(iters):
            start = time.perf_counter()
            results = fn(images)
            seconds.append(time.perf_counter() - start)
    return seconds, results


def environment(device: str) -> dict:
    """Versions and hardware of this run."""
    import torchvision
    env = dict(torch=torch.__version__, torchvision=torchvision.__version__,
               python=platform.python_version(), machine=platform.machine(),
               processor=cpu_name(), cpu_count=os.cpu_count(),
               torch_threads=torch.get_num_threads(), nnpack=nnpack_available())
    try:
        env['densebox_ops_backend'] = backend(torch.device(device))
    except Exception as err:  # report, do not fail the benchmark
        env['densebox_ops_backend'] = f'unknown ({type(err).__name__}: {err})'
    if device.startswith('cuda'):
        env['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return env


def run_inference_benchmark(devices: Sequence[str] = ('cpu',), batch_sizes: Sequence[int] = (1, 32),
                            amp_modes: Sequence[bool] = (False,), iters: int = 5,
                            warmup: int = 1, repeats: int = 3, image_hw: Sequence[int] = (375, 500),
                            seed: int = 0, config: Optional[str] = None,
                            cpu_fast_paths: bool = True,
                            log: Callable[[str], None] = print) -> dict:
    """Time densebox and torchvision SSD300 side by side.

    For every device, AMP mode and batch size, the two run alternately ``repeats`` times
    (each time ``warmup`` untimed calls, then ``iters`` timed ones on the same images);
    a repeat's rate is ``batch * iters / seconds`` and the reported rate is their median.
    ``cpu_fast_paths``: as in :func:`densebox.init_model` (False: densebox's CPU convs and
    pools run on ATen's kernels, as torchvision's do).

    Returns:
        ``{'env': {...}, 'settings': {...}, 'results': [entry, ...]}``, one entry per
        (impl, device, batch, amp) with ``img_per_s`` (median), ``img_per_s_repeats``,
        ``seconds_per_batch`` (median), ``detections_per_image`` (mean over the batch,
        last call) and ``error`` (None, or the message when that case failed).
    """
    height, width = image_hw
    tv_cpu = random_torchvision_ssd300(seed)
    db_cpu, cfg = densebox_from_torchvision(tv_cpu, config)
    if cpu_fast_paths:
        speed_up_cpu_inference(db_cpu)  # only affects CPU inference
    out = dict(env=environment(devices[0]),
               settings=dict(devices=list(devices), batch_sizes=list(batch_sizes),
                             amp=list(amp_modes), iters=iters, warmup=warmup, repeats=repeats,
                             image_hw=[height, width], seed=seed,
                             config=str(config or DEFAULT_CONFIG),
                             cpu_fast_paths=cpu_fast_paths, cpu_conv_mode=cpu_conv_mode()),
               results=[])
    for device in devices:
        if device.startswith('cuda') and 'gpu' not in out['env']:
            out['env']['gpu'] = torch.cuda.get_device_name(torch.device(device))
        runners = dict(densebox=DenseboxSSD(db_cpu.to(device), cfg),
                       torchvision=TorchvisionSSD(tv_cpu.to(device)))
        for amp in amp_modes:
            for batch in batch_sizes:
                images = random_images(batch, height, width, seed)
                rates = {impl: [] for impl in IMPLS}
                secs = {impl: [] for impl in IMPLS}
                dets: Dict[str, float] = {}
                errors: Dict[str, Optional[str]] = {impl: None for impl in IMPLS}
                for _ in range(repeats):
                    for impl in IMPLS:
                        if errors[impl]:
                            continue
                        try:
                            seconds, results = time_calls(runners[impl], images, iters, warmup,
                                                          device, amp)
                        except Exception as err:  # e.g. an op without a kernel for a dtype
                            errors[impl] = f'{type(err).__name__}: {err}'
                            continue
                        rates[impl].append(batch * iters / sum(seconds))
                        secs[impl].append(statistics.median(seconds))
                        dets[impl] = float(np.mean([len(r['scores']) for r in results]))
                for impl in IMPLS:
                    entry = dict(impl=impl, device=device, batch=batch, amp=amp,
                                 img_per_s=statistics.median(rates[impl]) if rates[impl] else None,
                                 img_per_s_repeats=rates[impl],
                                 seconds_per_batch=(statistics.median(secs[impl])
                                                    if secs[impl] else None),
                                 detections_per_image=dets.get(impl), error=errors[impl])
                    out['results'].append(entry)
                log(format_table(out['results'][-2:], header=False))
    return out


def paired(results: Sequence[dict]) -> List[dict]:
    """One row per (device, batch, amp) with both rates and densebox / torchvision."""
    rows: Dict[tuple, dict] = {}
    for e in results:
        row = rows.setdefault((e['device'], e['batch'], e['amp']),
                              dict(device=e['device'], batch=e['batch'], amp=e['amp']))
        row[e['impl']] = e['img_per_s']
        if e.get('error'):
            row.setdefault('errors', []).append(f"{e['impl']}: {e['error']}")
    for row in rows.values():
        db, tv = row.get('densebox'), row.get('torchvision')
        row['ratio'] = db / tv if db and tv else None
    return list(rows.values())


def format_table(results: Sequence[dict], header: bool = True) -> str:
    """Text table: device, batch, amp, img/s of each, densebox / torchvision."""
    def num(x, fmt):
        return format(x, fmt) if x is not None else 'n/a'
    lines = []
    if header:
        lines.append(f"{'device':<8}{'batch':>6}{'amp':>6}{'densebox img/s':>16}"
                     f"{'torchvision img/s':>19}{'ratio':>8}")
    for row in paired(results):
        lines.append(f"{row['device']:<8}{row['batch']:>6}{str(row['amp']):>6}"
                     f"{num(row.get('densebox'), '.3f'):>16}"
                     f"{num(row.get('torchvision'), '.3f'):>19}"
                     f"{num(row['ratio'], '.2f'):>8}")
        for err in row.get('errors', []):
            lines.append(f'    error {err}')
    return '\n'.join(lines)

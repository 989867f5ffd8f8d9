"""Other models beside the torchvision model a user would pick instead: img/s and FLOPs side
by side (different networks, so no ratio and no equal outputs).

Pairs (random weights on both sides):

* ``ssdlite``: densebox ``configs/ssdlite_mobilenetv2_coco.py`` (SSDLite, MobileNetV2,
  320 px) beside torchvision's ``ssdlite320_mobilenet_v3_large`` (SSDLite, MobileNetV3-L),
  end to end from host uint8 images (default 375 x 500) to host detections, as
  :mod:`densebox.benchmark.e2e` times SSD300.
* ``mobile_deeplabv3`` (``configs/mobile_deeplabv3_voc.py``: MobileNetV2 OS16, 1x1 +
  image-pooling head, 21 classes) and ``ffnet_78s`` (``configs/ffnet_78s_cityscapes.py``, 19
  classes) beside torchvision's ``deeplabv3_mobilenet_v3_large`` (21 classes), on
  1024 x 2048 images from host uint8 to the host label map at the image's size. densebox's
  test pipeline keeps the image's size (its Resize is set to the benchmark's image size:
  the VOC config's short side 512 becomes (2048, 1024), which the Cityscapes config already
  has); torchvision's model
  is called on the normalised full-size image (its ``weights.transforms()`` would resize to
  520) and its logits arg-maxed.

FLOPs: :func:`densebox.models.utils.analyze` (convolutions and matrix products, one
multiply-add = 2 FLOPs) of each network at the size it runs at. Output check: every side
returns one result per image of the right form (detections with boxes inside the image, or
a label map of the image's size with labels in range).
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .e2e import environment, random_images, time_calls

ROOT = Path(__file__).resolve().parents[2]
MODELS = ('ssdlite', 'mobile_deeplabv3', 'ffnet_78s')
_CONFIGS = dict(ssdlite='configs/ssdlite_mobilenetv2_coco.py',
                mobile_deeplabv3='configs/mobile_deeplabv3_voc.py',
                ffnet_78s='configs/ffnet_78s_cityscapes.py')
_PEERS = dict(ssdlite='ssdlite320_mobilenet_v3_large', mobile_deeplabv3='deeplabv3_mobilenet_v3_large',
              ffnet_78s='deeplabv3_mobilenet_v3_large')
_DEFAULT_HW = dict(ssdlite=(375, 500), mobile_deeplabv3=(1024, 2048), ffnet_78s=(1024, 2048))


def densebox_model(name: str, seed: int = 0, image_hw: Optional[Sequence[int]] = None):
    """(eval-mode densebox model with random weights, its Config); for the segmenters the
    test pipeline's Resize is set to ``image_hw`` (keep-ratio "fit into" that size), so
    images of that size go through the network at their size."""
    import warnings

    from densebox.apis import init_model
    from densebox.config import load_config
    cfg = load_config(str(ROOT / _CONFIGS[name]))
    if name != 'ssdlite':
        h, w = image_hw or _DEFAULT_HW[name]
        for key in ('val_dataloader', 'test_dataloader'):
            for step in cfg[key]['dataset']['pipeline']:
                if step['type'] == 'Resize':
                    step['scale'] = (int(w), int(h))
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # random weights, on purpose
        model = init_model(cfg, None, device='cpu')
    return model, cfg


def torchvision_model(name: str, seed: int = 0) -> torch.nn.Module:
    import torchvision
    torch.manual_seed(seed)
    if name == 'ssdlite':
        return torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None).eval()
    return torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=False).eval()


class DenseboxRunner:
    """Host uint8 images -> host results through :func:`densebox.inference`'s path."""

    def __init__(self, model):
        self.model = model

    def __call__(self, images):
        from densebox.apis import inference
        return inference(images, self.model, batch_size=len(images), keep_image=False)


class TorchvisionSegRunner:
    """Host uint8 images -> host (H, W) int64 label maps, torchvision's model at full size."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = next(model.parameters()).device
        self.mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(3, 1, 1)

    def __call__(self, images):
        batch = torch.stack([torch.from_numpy(i).to(self.device).permute(2, 0, 1).float()
                             .div_(255).sub_(self.mean).div_(self.std) for i in images])
        return list(self.model(batch)['out'].argmax(1).cpu())


def check_outputs(name: str, impl: str, images, results, num_classes: int) -> Optional[str]:
    """None when there is one well-formed result per image."""
    if len(results) != len(images):
        return f'{len(results)} results for {len(images)} images'
    for image, res in zip(images, results):
        h, w = image.shape[:2]
        if name == 'ssdlite':
            boxes = res.boxes if impl == 'densebox' else res['boxes'].numpy()
            if len(boxes) and (boxes.min() < -1e-3 or boxes[:, 0::2].max() > w + 1e-3
                               or boxes[:, 1::2].max() > h + 1e-3):
                return 'boxes outside the image'
        else:
            seg = res.sem_seg if impl == 'densebox' else res.numpy()
            if seg.shape != (h, w):
                return f'label map {seg.shape} for a {h}x{w} image'
            if seg.min() < 0 or seg.max() >= num_classes:
                return f'labels outside 0..{num_classes - 1}'
    return None


def run_models_benchmark(models: Sequence[str] = MODELS, batch_sizes: Sequence[int] = (1,),
                         iters: int = 3, warmup: int = 1, repeats: int = 3, seed: int = 0,
                         image_hw: Optional[Dict[str, Sequence[int]]] = None,
                         log: Callable[[str], None] = print) -> dict:
    """img/s (median of alternating repeats) and FLOPs of each pair on the CPU."""
    from densebox.models.utils import analyze
    image_hw = {**_DEFAULT_HW, **(image_hw or {})}
    out = dict(env=environment('cpu'),
               settings=dict(models=list(models), batch_sizes=list(batch_sizes), iters=iters,
                             warmup=warmup, repeats=repeats, seed=seed,
                             image_hw={m: list(image_hw[m]) for m in models}),
               results=[])
    for name in models:
        db, cfg = densebox_model(name, seed, image_hw[name])
        tv = torchvision_model(name, seed)
        h, w = image_hw[name]
        num_classes = dict(densebox=len(db.dataset_meta['classes']), torchvision=21)
        runners = dict(densebox=DenseboxRunner(db),
                       torchvision=(TorchvisionSegRunner(tv) if name != 'ssdlite'
                                    else _TorchvisionDetRunner(tv)))
        net_hw = dict(densebox=(320, 320) if name == 'ssdlite' else (h, w),
                      torchvision=(320, 320) if name == 'ssdlite' else (h, w))
        flops = dict(densebox=analyze(db, net_hw['densebox'])['flops'],
                     torchvision=_flops(tv, net_hw['torchvision'], name))
        params = dict(densebox=sum(p.numel() for p in db.parameters()),
                      torchvision=sum(p.numel() for p in tv.parameters()))
        for batch in batch_sizes:
            images = random_images(batch, h, w, seed)
            rates: Dict[str, List[float]] = {k: [] for k in runners}
            problems: Dict[str, Optional[str]] = {k: None for k in runners}
            for _ in range(repeats):
                for impl, runner in runners.items():
                    seconds, results = time_calls(runner, images, iters, warmup, 'cpu', False)
                    rates[impl].append(batch * iters / sum(seconds))
                    problems[impl] = problems[impl] or check_outputs(
                        name, impl, images, results, num_classes[impl])
            for impl in runners:
                out['results'].append(dict(
                    model=name, impl=impl, network=(_CONFIGS[name] if impl == 'densebox'
                                                    else _PEERS[name]),
                    batch=batch, image_hw=[h, w], network_hw=list(net_hw[impl]),
                    img_per_s=statistics.median(rates[impl]), img_per_s_repeats=rates[impl],
                    gflops=flops[impl] / 1e9, params=params[impl],
                    outputs_ok=problems[impl] is None, problem=problems[impl]))
            log(format_models_table(out['results'][-2:], header=False))
    return out


class _TorchvisionDetRunner:
    def __init__(self, model):
        from .e2e import TorchvisionSSD
        self._run = TorchvisionSSD(model)

    def __call__(self, images):
        return self._run(images)


def _flops(model: torch.nn.Module, hw, name: str) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 3, *hw)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if name == 'ssdlite':  # the network only, as analyze() counts densebox's
            feats = list(model.backbone(x).values())
            model.head(feats)
        else:
            model(x)
    return int(counter.get_total_flops())


def format_models_table(results: Sequence[dict], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(f"{'model':<18}{'impl':<13}{'network':<38}{'batch':>6}{'input':>11}"
                     f"{'img/s':>9}{'GFLOPs':>9}{'params M':>10}{'outputs':>9}")
    for r in results:
        ok = 'ok' if r['outputs_ok'] else f"BAD: {r['problem']}"
        net = Path(r['network']).name
        lines.append(f"{r['model']:<18}{r['impl']:<13}{net:<38}{r['batch']:>6}"
                     f"{'x'.join(map(str, r['network_hw'])):>11}{r['img_per_s']:>9.3f}"
                     f"{r['gflops']:>9.2f}{r['params'] / 1e6:>10.2f}{ok:>9}")
    return '\n'.join(lines)


__all__ = ['MODELS', 'densebox_model', 'torchvision_model', 'run_models_benchmark',
           'format_models_table']

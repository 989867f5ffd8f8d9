"""Training data pipelines: images per second of one worker process, on generated data.

Two pipelines, each exactly as its config builds it (data set class + ``train_pipeline``),
pointed at generated files in a temporary folder:

* ``ssd300``: ``configs/ssd300_coco.py`` on COCO-like JPEGs (640 x 480, 1 to 12 objects of
  the 80 categories, a COCO ``instances`` json): decode, photometric distortion, expand,
  min-IoU crop, resize to 300 x 300, flip, pack. Beside it, torchvision's own SSD
  augmentation (``references/detection`` ``ssd`` preset with ``transforms.v2``: photometric
  distortion, zoom out, IoU crop, flip) on the same files, plus a ``Resize`` to 300 x 300
  so that both hand a model the same input (torchvision's recipe resizes on the GPU, in the
  model's transform).
* ``cityscapes``: ``configs/ffnet_78s_cityscapes.py`` on Cityscapes-like 2048 x 1024 PNG
  images with train-id masks: decode, random rescale 0.5-2.0, 512 x 1024 crop
  (cat_max_ratio 0.75), flip, photometric distortion, pad, pack.

A worker's rate is ``images / seconds`` of ``dataset[i]`` calls in one process (one
thread: ``torch.set_num_threads(1)``, as DataLoader workers run); the two SSD pipelines
take turns, ``repeats`` times; medians. A GPU step of ``B`` images taking ``t`` seconds
is kept fed by ``W`` workers when ``W * rate >= B / t``. Each pipeline's outputs are
checked: image size, dtype, boxes inside the image, labels in range.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ('ssd300', 'cityscapes')


def _smooth_image(rng, height: int, width: int) -> np.ndarray:
    """A photo-like (height, width, 3) uint8 image: upsampled noise plus a few rectangles
    (pure noise would make JPEG / PNG decoding unrealistically slow)."""
    import cv2
    small = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x1, y1 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        x2, y2 = x1 + int(rng.integers(8, width // 3)), y1 + int(rng.integers(8, height // 3))
        img[y1:y2, x1:x2] = rng.integers(0, 256, 3)
    noise = rng.integers(-8, 9, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_coco_images(root, num_images: int = 64, seed: int = 0,
                     size=(480, 640)) -> Dict[str, str]:
    """COCO-like ``root/train2017/*.jpg`` + ``root/annotations/instances_train2017.json``."""
    import cv2

    from densebox.converters import COCO_CATEGORY_IDS
    from densebox.datasets.coco import COCO_CLASSES
    root = Path(root)
    (root / 'train2017').mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    images, anns = [], []
    for i in range(num_images):
        name = f'{i + 1:012d}.jpg'
        cv2.imwrite(str(root / 'train2017' / name), _smooth_image(rng, height, width)[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(dict(id=i + 1, file_name=name, height=height, width=width))
        for _ in range(int(rng.integers(1, 13))):
            w, h = rng.uniform(16, width * 0.6), rng.uniform(16, height * 0.6)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, iscrowd=0, area=w * h,
                             bbox=[x, y, w, h],
                             category_id=int(rng.choice(COCO_CATEGORY_IDS))))
    cats = [dict(id=c, name=n) for c, n in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]
    ann_file = root / 'annotations' / 'instances_train2017.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return dict(data_root=str(root) + '/', ann_file='annotations/instances_train2017.json',
                img='train2017/')


def make_cityscapes(root, num_images: int = 8, seed: int = 0, size=(1024, 2048)) -> str:
    """Cityscapes-like ``leftImg8bit/train/synth/*`` PNGs and ``gtFine`` train-id masks."""
    import cv2
    root = Path(root)
    img_dir = root / 'leftImg8bit' / 'train' / 'synth'
    seg_dir = root / 'gtFine' / 'train' / 'synth'
    img_dir.mkdir(parents=True, exist_ok=True)
    seg_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    for i in range(num_images):
        stem = f'synth_{i:06d}_000019'
        cv2.imwrite(str(img_dir / f'{stem}_leftImg8bit.png'),
                    _smooth_image(rng, height, width)[..., ::-1])
        # class regions: horizontal bands (road at the bottom, sky on top) and blocks
        seg = np.zeros((height, width), np.uint8)
        bands = np.sort(rng.integers(0, height, 4))
        for k, (a, b) in enumerate(zip(np.r_[0, bands], np.r_[bands, height])):
            seg[a:b] = (10, 2, 8, 13, 0)[k]
        for _ in range(10):
            x, y = int(rng.integers(0, width - 64)), int(rng.integers(0, height - 64))
            seg[y:y + int(rng.integers(16, 256)), x:x + int(rng.integers(16, 256))] = \
                int(rng.integers(0, 19))
        seg[rng.random((height, width)) < 0.01] = 255
        cv2.imwrite(str(seg_dir / f'{stem}_gtFine_labelTrainIds.png'), seg)
    return str(root) + '/'


def build_densebox_dataset(pipeline: str, data: dict):
    """The config's training data set (wrappers removed) on the generated files."""
    import copy

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from densebox.registry import DATASETS

    from densebox.setup_env import register_all_modules
    register_all_modules()
    init_default_scope('densebox')
    config = dict(ssd300='configs/ssd300_coco.py',
                  cityscapes='configs/ffnet_78s_cityscapes.py')[pipeline]
    ds = copy.deepcopy(Config.fromfile(str(ROOT / config)).train_dataloader.dataset)
    while 'pipeline' not in ds and isinstance(ds.get('dataset'), dict):
        ds = ds['dataset']  # RepeatDataset
    if pipeline == 'ssd300':
        ds.update(data_root=data['data_root'], ann_file=data['ann_file'],
                  data_prefix=dict(img=data['img']))
    else:
        ds.update(data_root=data['data_root'])
    return DATASETS.build(ds)


class TorchvisionSSDPipeline:
    """torchvision's SSD training augmentation (``references/detection/presets.py``,
    ``data_augmentation='ssd'``) with ``transforms.v2``, then ``Resize((300, 300))``.

    ``dataset[i]`` -> ``(image (3, 300, 300) uint8 tensor, target dict with 'boxes' (N, 4)
    xyxy and 'labels' (N,))``, read from a COCO json like the densebox data set.
    """

    def __init__(self, data: dict):
        import torch
        from torchvision.transforms import v2
        ann = json.loads((Path(data['data_root']) / data['ann_file']).read_text())
        self.root = Path(data['data_root']) / data['img']
        by_image: Dict[int, list] = {img['id']: [] for img in ann['images']}
        for a in ann['annotations']:
            by_image[a['image_id']].append(a)
        self.items = [(img['file_name'], by_image[img['id']]) for img in ann['images']]
        mean = [123, 117, 104]  # the preset's fill, the ImageNet mean in 0-255
        self.transforms = v2.Compose([
            v2.RandomPhotometricDistort(p=1.0), v2.RandomZoomOut(fill=mean),
            v2.RandomIoUCrop(), v2.RandomHorizontalFlip(p=0.5),
            v2.Resize((300, 300), antialias=True), v2.SanitizeBoundingBoxes()])
        self.torch = torch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors
        from torchvision.io import decode_jpeg, read_file
        name, anns = self.items[index]
        image = decode_jpeg(read_file(str(self.root / name)))
        boxes = self.torch.tensor([a['bbox'] for a in anns], dtype=self.torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        target = dict(boxes=tv_tensors.BoundingBoxes(boxes, format='XYXY',
                                                     canvas_size=image.shape[-2:]),
                      labels=self.torch.tensor([a['category_id'] for a in anns]))
        return self.transforms(tv_tensors.Image(image), target)


def check_output(pipeline: str, impl: str, item) -> Optional[str]:
    """None when one pipeline output has the expected form, else what is wrong."""
    import torch
    if impl == 'torchvision':
        image, target = item
        boxes, labels = target['boxes'], target['labels']
        h, w = image.shape[-2:]
    else:
        image = item['inputs']
        sample = item['data_samples']
        h, w = image.shape[-2:]
        if pipeline == 'cityscapes':
            seg = sample.gt_sem_seg.data
            if tuple(seg.shape[-2:]) != (h, w) or seg.dtype != torch.int64:
                return f'mask {tuple(seg.shape)} {seg.dtype} for image {tuple(image.shape)}'
            values = set(seg.unique().tolist())
            if not values <= set(range(19)) | {255}:
                return f'mask values {sorted(values - set(range(19)))} outside 0..18, 255'
            return None if (h, w) == (512, 1024) and image.dtype == torch.uint8 else \
                f'image {tuple(image.shape)} {image.dtype}, expected (3, 512, 1024) uint8'
    if (h, w) != (300, 300) or image.dtype != torch.uint8 or image.shape[0] != 3:
        return f'image {tuple(image.shape)} {image.dtype}, expected (3, 300, 300) uint8'
    if impl != 'torchvision':
        boxes, labels = sample.gt_instances.bboxes, sample.gt_instances.labels
        if hasattr(boxes, 'tensor'):
            boxes = boxes.tensor
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if len(boxes) and (boxes.min() < -1e-3 or boxes[:, 0::2].max() > w + 1e-3
                       or boxes[:, 1::2].max() > h + 1e-3):
        return f'boxes outside the {h}x{w} image'
    upper = 91 if impl == 'torchvision' else 80
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= upper):
        return f'labels outside 0..{upper - 1}'
    return None


def time_dataset(dataset, num_items: int, start: int = 0) -> tuple:
    """(seconds, outputs) of ``num_items`` calls ``dataset[i]``."""
    t0 = time.perf_counter()
    outputs = [dataset[(start + i) % len(dataset)] for i in range(num_items)]
    seconds = time.perf_counter() - t0
    return seconds, outputs


def run_data_benchmark(pipelines: Sequence[str] = PIPELINES, num_items: int = 32,
                       repeats: int = 3, seed: int = 0, coco_images: int = 64,
                       cityscapes_images: int = 8, workdir: Optional[str] = None,
                       log: Callable[[str], None] = print) -> dict:
    """Per-worker images/s of each pipeline (see the module docstring)."""
    import torch

    from .e2e import environment
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = dict(env=environment('cpu'),
               settings=dict(pipelines=list(pipelines), num_items=num_items, repeats=repeats,
                             seed=seed, coco_images=coco_images,
                             cityscapes_images=cityscapes_images, threads=1),
               results=[])
    try:
        with tempfile.TemporaryDirectory(prefix='densebox_data_', dir=workdir) as tmp:
            for pipeline in pipelines:
                if pipeline == 'ssd300':
                    data = make_coco_images(Path(tmp) / 'coco', coco_images, seed)
                    sides = dict(densebox=build_densebox_dataset('ssd300', data),
                                 torchvision=TorchvisionSSDPipeline(data))
                else:
                    data = dict(data_root=make_cityscapes(Path(tmp) / 'cityscapes',
                                                          cityscapes_images, seed))
                    sides = dict(densebox=build_densebox_dataset('cityscapes', data))
                out['results'] += _time_sides(pipeline, sides, num_items, repeats, seed, log)
    finally:
        torch.set_num_threads(old_threads)
    return out


def _time_sides(pipeline, sides, num_items, repeats, seed, log) -> List[dict]:
    import torch
    rates: Dict[str, List[float]] = {k: [] for k in sides}
    problems: Dict[str, Optional[str]] = {k: None for k in sides}
    for r in range(repeats):
        for impl, dataset in sides.items():
            torch.manual_seed(seed + r)
            np.random.seed(seed + r)
            dataset[0]  # warm-up (lazy loading, first decode)
            seconds, outputs = time_dataset(dataset, num_items, start=r * num_items)
            rates[impl].append(num_items / seconds)
            for item in outputs:
                problems[impl] = problems[impl] or check_output(pipeline, impl, item)
    results = []
    for impl in sides:
        results.append(dict(pipeline=pipeline, impl=impl,
                            img_per_s=statistics.median(rates[impl]),
                            img_per_s_repeats=rates[impl], outputs_ok=problems[impl] is None,
                            problem=problems[impl]))
        log(format_data_table(results[-1:], header=False))
    return results


def format_data_table(results: Sequence[dict], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(f"{'pipeline':<12}{'impl':<13}{'img/s per worker':>18}{'outputs':>10}")
    for r in results:
        ok = 'ok' if r['outputs_ok'] else f"BAD: {r['problem']}"
        lines.append(f"{r['pipeline']:<12}{r['impl']:<13}{r['img_per_s']:>18.2f}{ok:>10}")
    return '\n'.join(lines)


__all__ = ['make_coco_images', 'make_cityscapes', 'build_densebox_dataset',
           'TorchvisionSSDPipeline', 'check_output', 'run_data_benchmark', 'format_data_table']

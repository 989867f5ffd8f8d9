"""The open-vocabulary quickstart: ReCo with a tiny CLIP that densebox trains itself.

``densebox quickstart --task zero-shot`` runs, from configs/quickstart_reco_shapes.py:

1. image-caption pairs from the shapes generator: each caption names the shapes in the
   image with their colours and the background's colour ("a red circle and a blue star on
   a gray background."), wrapped in one of the CLIP prompt templates; a share of the images
   holds no shape ("a gray background."). Colours are named from the mean colour of each
   shape's visible pixels, i.e. from what the generator drew; the masks themselves are never
   used for training;
2. a tiny CLIP (open_clip, ResNet image tower) trained from scratch with open_clip's
   contrastive ``ClipLoss``;
3. a ReCo index over unlabelled shapes images made for it;
4. references for the class names (background first, as ReCo's context concept) and
   zero-shot mIoU on held-out images against their masks, through the Runner's test loop;
5. the same pipeline with the untrained CLIP (its random initialisation), for comparison.
"""
import json
import math
import os
import os.path as osp
import time
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch

from densebox.datasets.shapes import SHAPES_CLASSES, _background, render_image

__all__ = ['COLOUR_NAMES', 'colour_name', 'describe_scene', 'scene_caption', 'caption_for',
           'render_captioned',
           'make_caption_set', 'write_image_folder', 'write_eval_split', 'train_tiny_clip',
           'run_quickstart']

# Basic colour words and an RGB prototype of each (nearest prototype names a colour).
COLOUR_NAMES = {
    'red': (215, 35, 35), 'orange': (240, 140, 25), 'yellow': (235, 225, 40),
    'green': (45, 170, 50), 'cyan': (40, 205, 210), 'blue': (35, 70, 215),
    'purple': (135, 45, 185), 'pink': (240, 130, 195), 'white': (240, 240, 240),
    'gray': (128, 128, 128), 'black': (20, 20, 20), 'brown': (130, 80, 35),
}
_NAMES = tuple(COLOUR_NAMES)
_PROTOTYPES = np.array([COLOUR_NAMES[n] for n in _NAMES], np.float32)


def colour_name(rgb) -> str:
    """The basic colour word nearest (RGB distance) to ``rgb`` (3,)."""
    d = ((_PROTOTYPES - np.asarray(rgb, np.float32)[None]) ** 2).sum(1)
    return _NAMES[int(d.argmin())]


def _article(word: str) -> str:
    return 'an' if word[0] in 'aeiou' else 'a'


def describe_scene(img: np.ndarray, sem: np.ndarray, instances, min_pixels: int = 20) -> dict:
    """What a caption may say about a rendered image: ``{'shapes': [(colour, shape name)],
    'background': colour}``, the colour of each visible shape named from the mean of its
    visible pixels and the background's from the rest (``sem`` only tells background pixels
    from shape pixels)."""
    shapes = [(colour_name(img[visible].mean(0)), SHAPES_CLASSES[label])
              for label, visible in instances if visible.sum() >= min_pixels]
    background = colour_name(img[sem == 0].mean(0)) if (sem == 0).any() else 'gray'
    return dict(shapes=shapes, background=background)


def scene_caption(scene: dict, rng: np.random.Generator, colour_prob: float = 1.0,
                  background_prob: float = 1.0) -> str:
    """A caption of ``scene`` without a leading article, so that a prompt template can be put
    around it ("a photo of a {}."): ``'red circle, a blue star and an orange cross on a gray
    background'``. Shapes come in random order; each shape's colour is said with probability
    ``colour_prob`` and the background with ``background_prob`` (always for an empty image),
    so that the text tower also meets the bare names the class prompts use."""
    parts = []
    for i in rng.permutation(len(scene['shapes'])):
        colour, name = scene['shapes'][i]
        phrase = f'{colour} {name}' if rng.random() < colour_prob else name
        parts.append(f'{_article(phrase)} {phrase}')
    background = scene['background']
    if not parts:
        return f'{background} background' if rng.random() < colour_prob else 'background'
    parts[0] = parts[0].split(' ', 1)[1]  # the template brings the first article
    text = parts[0] if len(parts) == 1 else ', '.join(parts[:-1]) + ' and ' + parts[-1]
    if rng.random() < background_prob:
        text += f' on {_article(background)} {background} background'
    return text


def caption_for(img: np.ndarray, sem: np.ndarray, instances, rng: np.random.Generator,
                min_pixels: int = 20) -> str:
    """The full caption (every colour, the background) of a rendered image."""
    return scene_caption(describe_scene(img, sem, instances, min_pixels), rng)


def _empty_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = _background(rng, h, w)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(2, 14))
    return np.clip(img + noise + 0.5, 0, 255).astype(np.uint8)


def render_captioned(rng: np.random.Generator, size: int, max_objects: int,
                     size_range: Tuple[float, float], empty_fraction: float):
    """One image, its mask (0 background, k + 1 shape k) and its scene description."""
    if rng.random() < empty_fraction:
        img = _empty_image(rng, size, size)
        sem = np.zeros((size, size), np.uint8)
        return img, sem, describe_scene(img, sem, [])
    img, sem, instances = render_image(rng, size, size, max_objects, size_range)
    return img, sem, describe_scene(img, sem, instances)


def _generator(data: dict, split: int):
    def one(i):
        rng = np.random.default_rng([int(data['seed']), split, i])
        return render_captioned(rng, int(data['img_size']), int(data['max_objects']),
                                tuple(data['size_range']), float(data['empty_fraction']))
    return one


def make_caption_set(data: dict, count: int, split: int = 0):
    """(N, H, W, 3) uint8 images and their N scene descriptions for CLIP training."""
    one = _generator(data, split)
    images, scenes = [], []
    for i in range(count):
        img, _, scene = one(i)
        images.append(img)
        scenes.append(scene)
    return np.stack(images), scenes


def write_image_folder(data: dict, folder: str, count: int, split: int = 1) -> str:
    """``count`` unlabelled images as JPEG files (the ReCo index's folder)."""
    os.makedirs(folder, exist_ok=True)
    one = _generator(data, split)
    for i in range(count):
        path = osp.join(folder, f'index_{i:06d}.jpg')
        if not osp.isfile(path):
            img, _, _ = one(i)
            cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def write_eval_split(data: dict, root: str, count: int, split: int = 2) -> str:
    """Held-out images and masks in the ShapesSegDataset layout (``images/val``,
    ``masks/val``)."""
    img_dir, mask_dir = osp.join(root, 'images', 'val'), osp.join(root, 'masks', 'val')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    one = _generator(data, split)
    for i in range(count):
        name = f'val_{i:06d}'
        if osp.isfile(osp.join(mask_dir, name + '.png')):
            continue
        img, sem, _ = one(i)
        cv2.imwrite(osp.join(img_dir, name + '.jpg'), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(mask_dir, name + '.png'), sem)
    return root


def _templated(captions: Sequence[str], templates: Sequence[str], rng: np.random.Generator
               ) -> List[str]:
    return [templates[int(rng.integers(len(templates)))].format(c) for c in captions]


def train_tiny_clip(model_cfg: dict, images: np.ndarray, scenes: Sequence[dict],
                    train: dict, out_file: str, log=print) -> dict:
    """Train an ``open_clip.CLIP(**model_cfg)`` from scratch with ``open_clip.ClipLoss``.

    Args:
        images: (N, H, W, 3) uint8; scenes: N descriptions (:func:`describe_scene`), captioned
            afresh at every step (:func:`scene_caption` with ``colour_prob`` /
            ``background_prob``) and wrapped in a random prompt template when
            ``train['templates']``.
        train: ``iters``, ``batch_size``, ``lr``, ``weight_decay``, ``warmup_iters``,
            ``seed``, ``log_interval``, ``templates`` (bool), ``colour_prob``,
            ``background_prob``.
        out_file: where the state dict is saved (atomically).
    Returns:
        ``{'iters', 'seconds', 'seconds_per_iter', 'cpu_seconds_per_iter', 'final_loss'}``.
    """
    import open_clip

    from densebox.engine.checkpoint import atomic_save_checkpoint
    from densebox.models.backbones.clip import clip_tokenizer
    from densebox.models.backbones.maskclip import CLIP_MEAN, CLIP_STD
    from .prompts import RECO_TEMPLATES
    torch.manual_seed(int(train.get('seed', 0)))
    model = open_clip.CLIP(**model_cfg)
    iters = int(train['iters'])
    stats = dict(iters=iters, seconds=0.0, seconds_per_iter=float('nan'),
                 cpu_seconds_per_iter=float('nan'), final_loss=float('nan'))
    if iters > 0:
        tokenizer = clip_tokenizer(context_length=model_cfg['text_cfg']['context_length'])
        rng = np.random.default_rng(int(train.get('seed', 0)))
        x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255
        loss_fn = open_clip.ClipLoss()
        # as open_clip: no weight decay on gains, biases and the temperature
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and 'logit_scale' not in n]
        rest = [p for n, p in model.named_parameters() if p.ndim < 2 or 'logit_scale' in n]
        optimizer = torch.optim.AdamW(
            [dict(params=decay, weight_decay=float(train.get('weight_decay', 0.1))),
             dict(params=rest, weight_decay=0.0)], lr=float(train['lr']))
        warmup = int(train.get('warmup_iters', 0))

        def lr_at(it):
            if it < warmup:
                return (it + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (it - warmup) / max(1, iters - warmup)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        batch = int(train['batch_size'])
        interval = int(train.get('log_interval', 50))
        model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss_avg = None
        for it in range(iters):
            idx = rng.choice(len(x_all), size=batch, replace=False)
            x = (x_all[idx].float() - mean) / std
            flip = torch.from_numpy(rng.random(batch) < 0.5)
            x[flip] = x[flip].flip(3)
            texts = [scene_caption(scenes[i], rng, float(train.get('colour_prob', 1.0)),
                                   float(train.get('background_prob', 1.0))) for i in idx]
            texts = (_templated(texts, RECO_TEMPLATES, rng) if train.get('templates', True)
                     else ['a ' + t for t in texts])
            image_f, text_f, scale = model(x, tokenizer(texts))[:3]
            loss = loss_fn(image_f, text_f, scale)
            if not torch.isfinite(loss):
                raise FloatingPointError(f'tiny CLIP training: loss is {loss.item()} at '
                                         f'iteration {it}')
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # as CLIP: the temperature is clamped at 100
                model.logit_scale.clamp_(0, math.log(100))
            loss_avg = loss.item() if loss_avg is None else 0.9 * loss_avg + 0.1 * loss.item()
            if (it + 1) % interval == 0 or it + 1 == iters:
                elapsed = time.perf_counter() - start
                log(f'tiny CLIP iter {it + 1}/{iters}: loss {loss_avg:.3f}, '
                    f'{elapsed / (it + 1):.3f} s/iter')
        stats.update(seconds=time.perf_counter() - start, final_loss=float(loss_avg))
        stats['seconds_per_iter'] = stats['seconds'] / iters
        # CPU time of all threads: on a machine shared with other work, wall time overstates
        # the cost; cpu_seconds_per_iter / threads estimates an idle machine's wall time
        stats['cpu_seconds_per_iter'] = (time.process_time() - cpu_start) / iters
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    atomic_save_checkpoint(model.state_dict(), out_file)
    return stats


# --------------------------------------------------------------------------- pipeline
def _prepare_data(qs: dict, root: str, log) -> None:
    """The index images and the held-out split under ``root`` (made once per settings)."""
    settings = dict(data=qs['data'], num_index=qs['num_index'], num_val=qs['num_val'])
    marker = osp.join(root, '.zero_shot_data.json')
    if osp.isfile(marker):
        with open(marker) as f:
            if json.load(f) == json.loads(json.dumps(settings)):
                return
    start = time.perf_counter()
    write_image_folder(qs['data'], osp.join(root, 'index_images'), int(qs['num_index']))
    write_eval_split(qs['data'], root, int(qs['num_val']))
    with open(marker, 'w') as f:
        json.dump(settings, f, sort_keys=True)
    log(f'zero-shot quickstart data: {qs["num_index"]} index images, {qs["num_val"]} held-out '
        f'images with masks under {root} ({time.perf_counter() - start:.1f} s)')


def _variant_cfg(cfg, work_dir: str, checkpoint: str):
    import copy
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.model.clip.checkpoint = checkpoint
    cfg.model.references = osp.join(work_dir, 'references.pt')
    cfg.model.retrieval.index = osp.join(work_dir, 'index')
    return cfg


def run_quickstart(cfg, log=print) -> Dict[str, dict]:
    """Run the zero-shot quickstart of config ``cfg`` (configs/quickstart_reco_shapes.py).

    Returns ``{'trained': {...}, 'untrained': {...}}`` with each variant's training
    statistics, index size, mIoU and seconds per stage; also written to
    ``<work_dir>/zero_shot_summary.json``.
    """
    from densebox.tools_common import build_runner
    from densebox.models.backbones.clip import build_clip
    from .index import build_image_index
    qs = cfg.quickstart
    run_start = time.perf_counter()
    root = cfg.test_dataloader.dataset.data_root
    _prepare_data(qs, root, log)
    start = time.perf_counter()
    images, scenes = make_caption_set(qs['data'], int(qs['num_captioned']))
    example = scene_caption(scenes[0], np.random.default_rng(0))
    log(f'zero-shot quickstart: {len(scenes)} captioned images for CLIP training '
        f'({time.perf_counter() - start:.1f} s), e.g. "{example}"')
    variants = [('trained', int(qs['train']['iters']))]
    if qs.get('baseline', True):
        variants.append(('untrained', 0))
    summary = {}
    for name, iters in variants:
        work_dir = osp.join(cfg.work_dir, name)
        os.makedirs(work_dir, exist_ok=True)
        times = {}
        t = time.perf_counter()
        ckpt = osp.join(work_dir, 'tiny_clip.pt')
        train = dict(qs['train'], iters=iters)
        stats = train_tiny_clip(cfg.model.clip.model_cfg, images, scenes, train, ckpt, log)
        times['train_clip'] = time.perf_counter() - t
        t = time.perf_counter()
        clip = build_clip(model_cfg=cfg.model.clip.model_cfg, checkpoint=ckpt).eval()
        index = build_image_index(osp.join(root, 'index_images'), osp.join(work_dir, 'index'),
                                  clip, f'quickstart tiny CLIP ({name})',
                                  image_size=int(qs['data']['img_size']),
                                  batch_size=int(qs.get('index_batch_size', 100)),
                                  num_workers=0, progress=False)
        times['index'] = time.perf_counter() - t
        for stale in ('references.pt',):  # references follow the CLIP just trained
            if osp.isfile(osp.join(work_dir, stale)):
                os.remove(osp.join(work_dir, stale))
        t = time.perf_counter()
        runner = build_runner(_variant_cfg(cfg, work_dir, ckpt))
        runner.model.prepare()
        times['references'] = time.perf_counter() - t
        t = time.perf_counter()
        metrics = runner.test()
        times['test'] = time.perf_counter() - t
        summary[name] = dict(train=stats, index=index, metrics=dict(metrics),
                             seconds={k: round(v, 1) for k, v in times.items()})
        log(f'zero-shot quickstart ({name} CLIP, {iters} iterations): '
            f'mIoU {metrics.get("mIoU", float("nan")):.2f}')
    summary['total_seconds'] = round(time.perf_counter() - run_start, 1)
    with open(osp.join(cfg.work_dir, 'zero_shot_summary.json'), 'w') as f:
        json.dump(summary, f, indent=1, default=float)
    line = ', '.join(f'{n} CLIP mIoU {summary[n]["metrics"].get("mIoU", float("nan")):.2f}'
                     for n, _ in variants)
    log(f'zero-shot quickstart: {line} ({summary["total_seconds"]:.0f} s in all)')
    return summary

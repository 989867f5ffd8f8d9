"""Draw what a config's data pipeline produces, so you can see what the augmentation does.

    python tools/browse_dataset.py CONFIG --out-dir DIR [--num 20] [--phase train|val]
        [--seed 0] [--cfg-options KEY=VALUE ...]

Each saved image is the packed ``inputs`` tensor (the image after every transform, as the
model receives it before normalisation) with the packed ground truth drawn on it: boxes
and class names (ignored boxes with an ``(ignored)`` tag) for detection, the class mask
blended in for segmentation. Files are named ``<index>_<image name>.png``.
"""
import argparse
import os
import os.path as osp
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Draw augmented samples of a config\'s pipeline.')
    p.add_argument('config')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--num', type=int, default=20, help='how many samples to draw')
    p.add_argument('--phase', choices=['train', 'val', 'test'], default='train',
                   help='which dataloader\'s dataset and pipeline to use')
    p.add_argument('--seed', type=int, default=0, help='seed of the random augmentations')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    return p.parse_args(argv)


def draw_sample(packed: dict, classes, palette=None):
    """(H, W, 3) RGB drawing of a packed sample ``{'inputs': (3, H, W) uint8, 'data_samples'}``."""
    import numpy as np

    from densebox.visualization import draw_det, draw_seg
    img = packed['inputs'].permute(1, 2, 0).cpu().numpy()
    if img.dtype != np.uint8:
        img = img.clip(0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    sample = packed['data_samples']
    if 'gt_sem_seg' in sample:
        seg = sample.gt_sem_seg.data[0].cpu().numpy().astype(np.int64)
        return draw_seg(img, seg, class_names=classes, palette=palette)
    canvas = img
    if 'gt_instances' in sample:
        gt = sample.gt_instances
        canvas = draw_det(canvas, gt.bboxes.cpu().numpy(), gt.labels.cpu().numpy(),
                          class_names=classes, palette=palette)
    if 'ignored_instances' in sample and len(sample.ignored_instances) > 0:
        ign = sample.ignored_instances
        names = [f'{c} (ignored)' for c in classes]
        canvas = draw_det(canvas, ign.bboxes.cpu().numpy(), ign.labels.cpu().numpy(),
                          class_names=names, palette=palette)
    return canvas


def browse(config, out_dir: str, num: int = 20, phase: str = 'train', seed: int = 0,
           cfg_options: Optional[dict] = None) -> List[str]:
    """Draw ``num`` samples of the ``phase`` dataloader's dataset into ``out_dir``; returns
    the written paths."""
    import numpy as np
    import torch
    from mmengine.config import Config

    from densebox.registry import DATASETS

    from densebox.setup_env import register_all_modules
    from densebox.visualization import save_image
    register_all_modules()
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    loader = cfg.get(f'{phase}_dataloader')
    if not loader or 'dataset' not in loader:
        raise KeyError(f'config has no {phase}_dataloader.dataset')
    dataset = DATASETS.build(loader['dataset'])
    if len(dataset) == 0:
        raise ValueError(f'the {phase} data set of the config is empty')
    meta = dataset.metainfo
    classes = tuple(meta.get('classes') or ())
    palette = meta.get('palette')
    if palette is not None and len(palette) < len(classes):
        palette = None
    np.random.seed(seed)
    torch.manual_seed(seed)
    import random
    random.seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for i in range(min(num, len(dataset))):
        packed = dataset[i]
        path = packed['data_samples'].metainfo.get('img_path') or f'sample_{i}'
        name = f'{i:04d}_{osp.splitext(osp.basename(str(path)))[0]}.png'
        written.append(save_image(osp.join(out_dir, name), draw_sample(packed, classes, palette)))
    return written


def main(argv: Optional[List[str]] = None) -> List[str]:
    args = parse_args(argv)
    written = browse(args.config, args.out_dir, args.num, args.phase, args.seed,
                     args.cfg_options)
    print(f'{len(written)} samples drawn into {args.out_dir}')
    return written


if __name__ == '__main__':
    main()

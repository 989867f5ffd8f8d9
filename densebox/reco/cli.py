"""``tools/reco.py index|refs|pseudo-labels``: ReCo's image index, its per-class references,
and ReCo's predictions of a split as label pngs (ReCo+).

    python tools/reco.py index --images /data/imagenet/train --out work_dirs/reco_index \\
        --clip ViT-L-14-336 --checkpoint clip_vitl14_336_openai --image-size 336
    python tools/reco.py refs --config configs/reco_cityscapes.py \\
        --index work_dirs/reco_index --classes road,car,person --out refs.pt
    python tools/reco.py pseudo-labels --config configs/reco_cityscapes.py --split train \\
        --out work_dirs/reco_cityscapes/pseudo_labels      # ReCo+'s training targets

``index`` resumes an interrupted run in the same ``--out`` folder. ``refs`` takes the MaskCLIP
CLIP, the extractor and the co-segmentation settings from a ReCo config (``--config``, default
configs/reco_cityscapes.py); ``--index`` and ``--clip``/``--checkpoint`` (the CLIP that built the
index) override its ``model.retrieval``; ``--classes`` defaults to the config's classes.
"""
import argparse
import os.path as osp
from typing import List, Optional

__all__ = ['main', 'index_main', 'refs_main', 'pseudo_labels_main']


def _clip_args(p: argparse.ArgumentParser, default_name: Optional[str]) -> None:
    p.add_argument('--clip', default=default_name,
                   help='open_clip model name of the retrieval CLIP (e.g. ViT-L-14-336, RN50)')
    p.add_argument('--checkpoint', default=None,
                   help='its weights: a file or a zoo name (e.g. clip_vitl14_336_openai)')


def _build_retrieval_clip(name: str, checkpoint: str):
    from densebox.models.backbones.clip import build_clip
    return build_clip(name, checkpoint=checkpoint)


def index_main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(prog='tools/reco.py index',
                                description='Embed an image folder with CLIP (resumable).')
    p.add_argument('--images', required=True, help='folder of images (searched recursively)')
    p.add_argument('--out', required=True, help='index folder (an interrupted run resumes)')
    _clip_args(p, 'ViT-L-14-336')
    p.add_argument('--image-size', type=int, default=None,
                   help="CLIP input size (default: the model's, 336 for ViT-L-14-336)")
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--workers', type=int, default=4)
    p.add_argument('--chunk-rows', type=int, default=65536)
    p.add_argument('--device', default='auto')
    args = p.parse_args(argv)
    from densebox.apis.model import resolve_device
    from densebox.reco import build_image_index
    if args.checkpoint is None:
        raise SystemExit('tools/reco.py index: --checkpoint (the CLIP weights file or zoo name) '
                         'is required; a random CLIP retrieves nothing useful')
    device = resolve_device(args.device)
    clip = _build_retrieval_clip(args.clip, args.checkpoint).eval()
    size = args.image_size or int(clip.visual.image_size[0]
                                  if isinstance(clip.visual.image_size, (tuple, list))
                                  else clip.visual.image_size)
    result = build_image_index(args.images, args.out, clip,
                               f'{args.clip} ({osp.basename(str(args.checkpoint))})',
                               image_size=size, batch_size=args.batch_size,
                               num_workers=args.workers, chunk_rows=args.chunk_rows,
                               device=device)
    print(f'ReCo index {args.out}: {result["embedded"]} images embedded, '
          f'{result["skipped"]} unreadable skipped')
    return result


def refs_main(argv: Optional[List[str]] = None):
    p = argparse.ArgumentParser(prog='tools/reco.py refs',
                                description='Compute ReCo references of class names.')
    p.add_argument('--config', default='configs/reco_cityscapes.py',
                   help='a ReCo config: MaskCLIP CLIP, extractor and settings come from it')
    p.add_argument('--index', default=None, help='index folder (default: the config\'s)')
    _clip_args(p, None)
    p.add_argument('--classes', default=None,
                   help='comma-separated class names (default: the config\'s classes)')
    p.add_argument('--out', default=None, help='reference file (default: the config\'s)')
    p.add_argument('--k', type=int, default=None, help='images retrieved per class (ReCo: 50)')
    p.add_argument('--device', default='auto')
    args = p.parse_args(argv)
    from densebox.config import load_config
    from densebox.apis.model import resolve_device
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    cfg = load_config(args.config)
    model_cfg = dict(cfg.model)
    if model_cfg.get('type') != 'ReCoSegmentor':
        raise SystemExit(f'{args.config} is not a ReCo config (model.type '
                         f'{model_cfg.get("type")!r})')
    retrieval = dict(model_cfg.get('retrieval') or {})
    if args.index:
        retrieval['index'] = args.index
    if args.clip or args.checkpoint:
        retrieval['clip'] = dict(model_name=args.clip, checkpoint=args.checkpoint)
    if args.k:
        retrieval['k'] = args.k
    if 'index' not in retrieval:
        raise SystemExit('tools/reco.py refs: give --index (or model.retrieval.index in the '
                         'config)')
    classes = ([c.strip() for c in args.classes.split(',') if c.strip()]
               if args.classes is not None else list(model_cfg['classes']))
    if not classes:
        raise SystemExit('tools/reco.py refs: the class list is empty')
    out = args.out or model_cfg.get('references')
    if not out:
        raise SystemExit('tools/reco.py refs: give --out (or model.references in the config)')
    model_cfg.update(retrieval=retrieval, references=out, classes=classes)
    model = MODELS.build(model_cfg).to(resolve_device(args.device)).eval()
    model.prepare()
    print(f'ReCo references of {len(classes)} classes written to {out}')
    return model


def pseudo_labels_main(argv: Optional[List[str]] = None) -> int:
    """Write ReCo's predictions of a split as label pngs (ReCo+'s training targets)."""
    p = argparse.ArgumentParser(prog='tools/reco.py pseudo-labels',
                                description="Write a ReCo config's predictions on a split as "
                                            'label pngs, for ReCo+.')
    p.add_argument('--config', required=True, help='a ReCo config, e.g. configs/reco_cityscapes.py')
    p.add_argument('--split', default='train',
                   help="the split replacing 'val' in the test data set's image folder")
    p.add_argument('--out', required=True, help='folder of the pngs (<image stem>.png)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--device', default='auto')
    from mmengine.config import DictAction
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    args = p.parse_args(argv)
    import os
    import numpy as np
    from mmengine.dataset import pseudo_collate
    from PIL import Image
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from densebox.apis import init_model
    from densebox.config import load_config
    from densebox.registry import DATASETS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    ds_cfg = dict(cfg.test_dataloader.dataset)
    img_dir = ds_cfg['data_prefix']['img_path']
    parts = img_dir.rstrip('/').split('/')
    if 'val' in parts:
        parts[len(parts) - 1 - parts[::-1].index('val')] = args.split
    ds_cfg['data_prefix'] = dict(img_path='/'.join(parts))
    ds_cfg.pop('ann_file', None)
    ds_cfg['pipeline'] = [t for t in ds_cfg['pipeline'] if t['type'] != 'LoadAnnotations']
    dataset = DATASETS.build(ds_cfg)
    model = init_model(cfg, device=args.device)
    root = osp.join(dataset.data_root or '', '/'.join(parts)) if not osp.isabs(
        '/'.join(parts)) else '/'.join(parts)
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=pseudo_collate)
    written = 0
    for batch in tqdm(loader, desc='ReCo pseudo-labels', unit='batch'):
        for sample in model.test_step(batch):
            rel = osp.relpath(sample.img_path, dataset.data_prefix['img_path'])
            stem = rel[:-len(dataset.img_suffix)] if rel.endswith(dataset.img_suffix) else \
                osp.splitext(rel)[0]
            path = osp.join(args.out, stem + '.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            label = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
            Image.fromarray(label).save(path)
            written += 1
    print(f'{written} pseudo-label pngs from {root} written under {args.out}')
    return written


def main(argv: Optional[List[str]] = None):
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {'index': index_main, 'refs': refs_main, 'pseudo-labels': pseudo_labels_main}
    if argv and argv[0] in ('-h', '--help'):
        print('usage: tools/reco.py {index,refs,pseudo-labels} ...\n'
              '  index          CLIP image embeddings of an image folder (resumable)\n'
              '  refs           ReCo references of class names\n'
              '  pseudo-labels  ReCo predictions of a split as label pngs (ReCo+)')
        return 0
    if not argv or argv[0] not in commands:
        print('usage: tools/reco.py {index,refs,pseudo-labels} ...  (--help after a command '
              'for its options)', file=sys.stderr)
        raise SystemExit(2)
    return commands[argv[0]](argv[1:])

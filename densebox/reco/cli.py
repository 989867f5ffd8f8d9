"""``tools/reco.py index|refs``: build ReCo's image index and its per-class references.

    python tools/reco.py index --images /data/imagenet/train --out work_dirs/reco_index \\
        --clip ViT-L-14-336 --checkpoint clip_vitl14_336_openai --image-size 336
    python tools/reco.py refs --config configs/reco_cityscapes.py \\
        --index work_dirs/reco_index --classes road,car,person --out refs.pt

``index`` resumes an interrupted run in the same ``--out`` folder. ``refs`` takes the MaskCLIP
CLIP, the extractor and the co-segmentation settings from a ReCo config (``--config``, default
configs/reco_cityscapes.py); ``--index`` and ``--clip``/``--checkpoint`` (the CLIP that built the
index) override its ``model.retrieval``; ``--classes`` defaults to the config's classes.
"""
import argparse
import os.path as osp
from typing import List, Optional

__all__ = ['main', 'index_main', 'refs_main']


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
    from densebox.apis.model import load_config, resolve_device
    from densebox.registry import MODELS, register_all_modules
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


def main(argv: Optional[List[str]] = None):
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {'index': index_main, 'refs': refs_main}
    if not argv or argv[0] not in commands:
        print('usage: tools/reco.py {index,refs} ...  (--help after a command for its options)',
              file=sys.stderr)
        raise SystemExit(2)
    return commands[argv[0]](argv[1:])

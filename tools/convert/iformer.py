"""Convert an official iFormer ImageNet checkpoint into densebox IFormer backbone weights.

    python tools/convert/iformer.py iformer_small.pth iformer_s_densebox.pth --arch s
    python tools/convert/iformer.py iformer_small_384.pth out.pth --arch s --pretrain-img-size 384

IN is the official file (sail-sg/iFormer, e.g. https://huggingface.co/sail/dl2/resolve/main/
iformer/iformer_small.pth), read with ``weights_only=True``. OUT holds ``{'state_dict', 'meta'}``
for a backbone's ``init_cfg=dict(type='Pretrained', checkpoint=OUT)``; with ``--with-head`` it
holds IFormerClassifier weights instead. A file of another size is refused with the keys and
shapes that do not fit.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.converters.iformer import convert_official_iformer  # noqa: E402
from densebox.engine.checkpoint import atomic_save_checkpoint, safe_torch_load  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official iFormer checkpoint (.pth)')
    parser.add_argument('dst', help='densebox checkpoint to write')
    parser.add_argument('--arch', choices=('s', 'b', 'l'), required=True,
                        help='iFormer size of the checkpoint')
    parser.add_argument('--pretrain-img-size', type=int, default=224, choices=(224, 384),
                        help='training resolution of the checkpoint (default 224)')
    parser.add_argument('--with-head', action='store_true',
                        help='keep the ImageNet classifier (IFormerClassifier keys)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.is_file():
        raise SystemExit(f'{src}: no such file')
    state = safe_torch_load(str(src), map_location='cpu')
    for key in ('state_dict', 'model', 'state_dict_ema'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise SystemExit(f'{src}: expected a state dict, got {type(state).__name__}')
    converted = convert_official_iformer(state, args.arch, args.pretrain_img_size,
                                         with_head=args.with_head)
    model = 'IFormerClassifier' if args.with_head else 'IFormer'
    checkpoint = dict(state_dict=converted, meta=dict(
        source=str(src), converter='iformer_official', model=model, arch=args.arch,
        pretrain_img_size=args.pretrain_img_size))
    atomic_save_checkpoint(checkpoint, args.dst)
    print(f'{src} -> {args.dst}: {len(converted)} tensors for {model}(arch={args.arch!r}, '
          f'pretrain_img_size={args.pretrain_img_size})')
    return checkpoint


if __name__ == '__main__':
    main()

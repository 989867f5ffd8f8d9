"""Convert an official SG-Former ImageNet checkpoint into densebox SGFormer backbone weights.

    python tools/convert/sgformer.py sgformer_b.pth sgformer_b_densebox.pth --arch b

IN is the official file (OliverRensu/SG-Former): a state dict or a training checkpoint
holding ``state_dict`` (and ``state_dict_ema``: pick it with ``--ema``), read with
``weights_only=True`` (a checkpoint that pickles its argparse namespace is refused; save its
``state_dict`` alone first). OUT holds ``{'state_dict', 'meta'}`` for a backbone's
``init_cfg=dict(type='Pretrained', checkpoint=OUT)``; with ``--with-head`` it holds
SGFormerClassifier weights instead. A file of another size is refused with the keys and
shapes that do not fit.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.converters.sgformer import convert_official_sgformer  # noqa: E402
from densebox.engine.checkpoint import atomic_save_checkpoint, safe_torch_load  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official SG-Former checkpoint (.pth)')
    parser.add_argument('dst', help='densebox checkpoint to write')
    parser.add_argument('--arch', choices=('s', 'm', 'b'), required=True,
                        help='SG-Former size of the checkpoint')
    parser.add_argument('--ema', action='store_true',
                        help='convert state_dict_ema instead of state_dict')
    parser.add_argument('--with-head', action='store_true',
                        help='keep the ImageNet classifier (SGFormerClassifier keys)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.is_file():
        raise SystemExit(f'{src}: no such file')
    state = safe_torch_load(str(src), map_location='cpu')
    keys = ('state_dict_ema',) if args.ema else ('state_dict', 'model')
    if isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in keys):
        state = next(state[k] for k in keys if isinstance(state.get(k), dict))
    elif args.ema:
        raise SystemExit(f'{src}: --ema given but the file holds no state_dict_ema')
    if not isinstance(state, dict):
        raise SystemExit(f'{src}: expected a state dict, got {type(state).__name__}')
    converted = convert_official_sgformer(state, args.arch, with_head=args.with_head)
    model = 'SGFormerClassifier' if args.with_head else 'SGFormer'
    checkpoint = dict(state_dict=converted, meta=dict(
        source=str(src), converter='sgformer_official', model=model, arch=args.arch,
        ema=args.ema))
    atomic_save_checkpoint(checkpoint, args.dst)
    print(f'{src} -> {args.dst}: {len(converted)} tensors for {model}(arch={args.arch!r})')
    return checkpoint


if __name__ == '__main__':
    main()

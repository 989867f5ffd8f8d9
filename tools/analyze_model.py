"""Print a model's parameter count and FLOPs.

    python tools/analyze_model.py CONFIG [--shape H W] [--cfg-options KEY=VALUE ...]

Builds ``cfg.model`` with densebox's registry (no weights are loaded) and runs one forward
pass on a random (1, 3, H, W) input (``mode='tensor'``: network only, no pre- or
post-processing). FLOPs count convolutions and matrix products with one multiply-add = 2
FLOPs (``torch.utils.flop_counter``); MAdds = FLOPs / 2 is the number MobileNet-style
papers report. Norms, activations, pooling and resizing are not counted.
"""
import argparse
import sys
from typing import Optional, Sequence


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Parameter count and FLOPs of a model config')
    parser.add_argument('config', help='path of a densebox config file')
    parser.add_argument('--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='input height and width (default 512 512)')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        metavar='KEY=VALUE',
                        help="override config entries, e.g. model.arch=b (mmengine's "
                             'DictAction syntax)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import densebox.models  # noqa: F401  (registers the model classes)
    from densebox.models.utils import analyze

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'model' not in cfg:
        sys.exit(f'analyze_model: {args.config} defines no `model`')
    init_default_scope(cfg.get('default_scope', 'densebox'))
    shape = tuple(args.shape) if args.shape else (512, 512)
    result = analyze(cfg.model.to_dict(), shape)
    print(f'config: {args.config}')
    print(f'input shape: 1x3x{shape[0]}x{shape[1]}')
    print(f'params: {result["params"]:,} ({result["params"] / 1e6:.2f} M)')
    print(f'FLOPs: {result["flops"] / 1e9:.3f} G  (1 multiply-add = 2 FLOPs)')
    print(f'MAdds: {result["madds"] / 1e9:.3f} G  (= FLOPs / 2)')
    return result


if __name__ == '__main__':
    main()

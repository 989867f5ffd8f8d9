"""Print a model's parameter count and FLOPs.

    python tools/analyze_model.py CONFIG [--shape H W] [--cfg-options KEY=VALUE ...]

Builds ``cfg.model`` with densebox's registry (no weights are loaded) and runs one forward
pass on a random (1, 3, H, W) input (``mode='tensor'``: network only, no pre- or
post-processing), on the meta device (no memory, no arithmetic; the CPU for a model that
cannot run there). FLOPs count convolutions and matrix products (attention's included) with
one multiply-add = 2
FLOPs (``torch.utils.flop_counter``); MAdds = FLOPs / 2 is the number MobileNet-style
papers report. Norms, activations, pooling and resizing are not counted. The count of every
direct child of the model (backbone, neck, decode_head, ...) is printed too.

A config may record the size its paper reports, as
``paper_model_size = dict(params=50.3e6, flops=269.2e9, shape=(1024, 1024),
exclude=['text_encoder'])`` (``flops`` as the paper counts them, here one multiply-add = 1
FLOP); the tool then also counts the model at that input without the ``exclude``d children
and prints both side by side.
"""
import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder


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

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'model' not in cfg:
        sys.exit(f'analyze_model: {args.config} defines no `model`')
    init_default_scope(cfg.get('default_scope', 'densebox'))
    shape = tuple(args.shape) if args.shape else (512, 512)
    result = _analyze(cfg.model.to_dict(), shape)
    print(f'config: {args.config}')
    print(f'input shape: 1x3x{shape[0]}x{shape[1]}')
    print(f'params: {result["params"]:,} ({result["params"] / 1e6:.2f} M)')
    print(f'FLOPs: {result["flops"] / 1e9:.3f} G  (1 multiply-add = 2 FLOPs)')
    print(f'MAdds: {result["madds"] / 1e9:.3f} G  (= FLOPs / 2)')
    for name, part in result['modules'].items():
        if part['params'] or part['flops']:
            print(f'  {name:<18} params {part["params"] / 1e6:9.3f} M   '
                  f'MAdds {part["madds"] / 1e9:9.3f} G')
    paper = cfg.get('paper_model_size')
    if paper:
        result['paper'] = _compare_with_paper(cfg.model.to_dict(), dict(paper), shape, result)
    return result


def _analyze(model_cfg: dict, shape) -> dict:
    """Counts on the meta device (fast, no memory); on the CPU if the model cannot run there."""
    from densebox.models.utils import analyze
    try:
        return analyze(model_cfg, shape, by_module=True, on_meta=True)
    except (NotImplementedError, RuntimeError):
        return analyze(model_cfg, shape, by_module=True)


def _compare_with_paper(model_cfg: dict, paper: dict, shape, result: dict) -> dict:
    """Count the model as the paper did (its input shape, without ``exclude``) and print it
    beside the paper's numbers."""
    paper_shape = tuple(paper.get('shape') or shape)
    exclude = list(paper.get('exclude') or [])
    at_shape = result if paper_shape == tuple(shape) else _analyze(model_cfg, paper_shape)
    unknown = [n for n in exclude if n not in at_shape['modules']]
    if unknown:
        sys.exit(f'analyze_model: paper_model_size.exclude names {unknown}, which the model '
                 f'does not have (its parts: {sorted(at_shape["modules"])})')
    params = at_shape['params'] - sum(at_shape['modules'][n]['params'] for n in exclude)
    madds = at_shape['madds'] - sum(at_shape['modules'][n]['madds'] for n in exclude)
    without = f', without {" and ".join(exclude)}' if exclude else ''
    print(f'as the paper counts (input 1x3x{paper_shape[0]}x{paper_shape[1]}{without}, '
          f'one multiply-add = 1 FLOP):')
    print(f'  params  densebox {params / 1e6:8.2f} M   paper {paper["params"] / 1e6:8.2f} M')
    print(f'  GFLOPs  densebox {madds / 1e9:8.1f}     paper {paper["flops"] / 1e9:8.1f}')
    return dict(params=params, madds=madds, shape=paper_shape, exclude=exclude,
                paper_params=paper['params'], paper_flops=paper['flops'])


if __name__ == '__main__':
    main()

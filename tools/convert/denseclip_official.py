"""Convert a released DenseCLIP segmentation checkpoint (raoyongming/DenseCLIP, mmseg 0.x)
into a densebox checkpoint.

    python tools/convert/denseclip_official.py denseclip_fpn_res50.pth denseclip_r50.pth
    python tools/test.py configs/denseclip_r50_fpn_ade20k.py denseclip_r50.pth

IN is read with ``weights_only=True`` (nothing in it runs). The densebox config is told
from the checkpoint's keys (RN50, RN101, ViT-B/16, or the CLIP RN50 baseline) unless
``--config`` names one; the converted weights are checked against the model that config
builds (every key and shape) before OUT is written, atomically, as
``{'state_dict', 'meta': {'dataset_meta': ...}}``.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.converters.denseclip import (convert_denseclip_checkpoint,  # noqa: E402
                                           denseclip_config_for)
from densebox.engine.checkpoint import atomic_save_checkpoint, safe_torch_load  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='DenseCLIP checkpoint (.pth) as released')
    parser.add_argument('dst', help='densebox checkpoint to write')
    parser.add_argument('--config', default=None,
                        help='densebox config the weights are for (default: told from the keys)')
    return parser.parse_args(argv)


def check_against_config(state: dict, config: str) -> None:
    """Every key and shape of ``state`` equals those of the model ``config`` builds (built
    on the meta device: no memory, no CLIP weights needed)."""
    import torch
    from densebox.config import load_config
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    cfg = load_config(config)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f'{k}: {tuple(state[k].shape)} vs {expected[k]}' for k in expected
              if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or shapes:
        raise SystemExit(f'the converted weights do not fit {config}: missing {missing[:5]}, '
                         f'unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}')


def main(argv=None) -> dict:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.is_file():
        raise SystemExit(f'{src}: no such file')
    checkpoint = safe_torch_load(str(src), map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise SystemExit(f'{src}: expected a checkpoint dict, got {type(checkpoint).__name__}')
    try:
        converted = convert_denseclip_checkpoint(checkpoint)
    except (KeyError, ValueError) as err:
        raise SystemExit(f'{src}: {err}') from err
    config = args.config or denseclip_config_for(converted['state_dict'])
    check_against_config(converted['state_dict'], config)
    converted['meta']['converted_from'] = dict(file=src.name, project='raoyongming/DenseCLIP',
                                               config=config)
    atomic_save_checkpoint(converted, str(args.dst))
    print(f'{src} -> {args.dst}: {len(converted["state_dict"])} tensors for {config}')
    return converted


if __name__ == '__main__':
    main()

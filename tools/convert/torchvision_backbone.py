"""Convert a torchvision ImageNet classifier into densebox backbone weights.

    python tools/convert/torchvision_backbone.py --arch mobilenet_v2 mobilenet_v2-7ebf99e0.pth OUT.pth
    python tools/convert/torchvision_backbone.py --arch resnet18 resnet18-f37072fd.pth OUT.pth

``--arch``: ``mobilenet_v2`` (-> MobileNetV2), ``resnet18`` / ``resnet34`` (-> FFNetResNet
``'18'`` / ``'34'``). IN is read with ``weights_only=True``. OUT holds
``{'state_dict', 'meta'}``; write it to ``$DENSEBOX_HOME/checkpoints/<zoo name>.pth`` for the
recipes' ``zoo://<zoo name>`` starting point.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.converters.torchvision_seg import (  # noqa: E402
    BACKBONE_ARCHS, convert_torchvision_backbone_checkpoint)
from densebox.engine import atomic_save_checkpoint, safe_torch_load  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='torchvision state dict (.pth)')
    parser.add_argument('dst', help='densebox checkpoint to write')
    parser.add_argument('--arch', required=True, choices=BACKBONE_ARCHS)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.is_file():
        raise SystemExit(f'{src}: no such file')
    checkpoint = safe_torch_load(str(src), map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise SystemExit(f'{src}: expected a state dict, got {type(checkpoint).__name__}')
    state = convert_torchvision_backbone_checkpoint(checkpoint, arch=args.arch)
    converted = {'state_dict': state, 'meta': {'converted_from': f'torchvision {args.arch}'}}
    atomic_save_checkpoint(converted, str(args.dst))
    print(f'{src} -> {args.dst}: {len(state)} tensors')
    return converted


if __name__ == '__main__':
    main()

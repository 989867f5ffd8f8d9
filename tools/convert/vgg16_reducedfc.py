"""Convert a published reduced-fc ImageNet VGG16 into densebox SSDVGG backbone weights.

    python tools/convert/vgg16_reducedfc.py --channel-order bgr vgg16_caffe-292e1171.pth OUT.pth
    python tools/convert/vgg16_reducedfc.py --channel-order rgb vgg16_features-amdegroot-88682ab5.pth OUT.pth

``--channel-order`` is the colour order the source's conv1_1 was trained on: ``bgr`` for the
Caffe weights (OpenMMLab's ``vgg16_caffe``, ssd.pytorch's ``vgg16_reducedfc``), ``rgb`` for
torchvision's ``IMAGENET1K_FEATURES``; the output expects RGB (see
``densebox/converters/vgg16_reducedfc.py``). IN is read with ``weights_only=True``. OUT holds
``{'state_dict', 'meta'}``; write it to ``$DENSEBOX_HOME/checkpoints/<zoo name>.pth`` for the
recipes' ``zoo://<zoo name>`` starting point, or name it in a backbone's ``init_cfg``.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.converters.vgg16_reducedfc import (CHANNEL_ORDERS,  # noqa: E402
                                                 convert_vgg16_reducedfc_checkpoint)
from densebox.engine import atomic_save_checkpoint, safe_torch_load  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='the published VGG16 state dict (.pth)')
    parser.add_argument('dst', help='densebox checkpoint to write')
    parser.add_argument('--channel-order', choices=CHANNEL_ORDERS, required=True,
                        help="colour order the source's first conv was trained on")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.is_file():
        raise SystemExit(f'{src}: no such file')
    checkpoint = safe_torch_load(str(src), map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise SystemExit(f'{src}: expected a state dict, got {type(checkpoint).__name__}')
    converted = convert_vgg16_reducedfc_checkpoint(checkpoint, channel_order=args.channel_order)
    atomic_save_checkpoint(converted, str(args.dst))
    missing = converted['meta']['not_in_source']
    print(f'{src} -> {args.dst}: {len(converted["state_dict"])} tensors'
          + (f'; {", ".join(missing)} (fc6 / fc7) not in the source: they keep their init'
             if missing else ''))
    return converted


if __name__ == '__main__':
    main()

"""Convert torchvision's ssd300_vgg16 weights into a densebox SSD300 COCO checkpoint.

    python tools/convert/torchvision_ssd.py ssd300_vgg16_coco-b556d3b4.pth ssd300_coco_tv.pth

IN is a torchvision state dict (``torch.save(model.state_dict())``, as torchvision
publishes it); it is read with ``weights_only=True``. OUT holds ``{'state_dict', 'meta'}``
of plain tensors and Python values, for ``configs/ssd300_coco_torchvision.py``:

    python tools/test.py configs/ssd300_coco_torchvision.py ssd300_coco_tv.pth
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.converters import convert_torchvision_ssd300  # noqa: E402
from densebox.engine import safe_torch_load  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='torchvision ssd300_vgg16 state dict (.pth)')
    parser.add_argument('dst', help='densebox checkpoint to write')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.is_file():
        raise SystemExit(f'{src}: no such file')
    state = safe_torch_load(str(src), map_location='cpu')
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict):
        raise SystemExit(f'{src}: expected a state dict, got {type(state).__name__}')
    checkpoint = convert_torchvision_ssd300(state)
    dst = Path(args.dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, str(dst))
    print(f'{src} -> {dst}: {len(checkpoint["state_dict"])} tensors, '
          f'{len(checkpoint["meta"]["dataset_meta"]["classes"])} classes')
    return checkpoint


if __name__ == '__main__':
    main()

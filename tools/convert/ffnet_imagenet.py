"""Convert FFNet's published ImageNet weights into densebox FFNetResNet backbone weights.

    python tools/convert/ffnet_imagenet.py --arch 78S ffnet78S.zip OUT.pth
    python tools/convert/ffnet_imagenet.py --arch 150 ffnet150_AAX_imagenet_state_dict_quarts.pth OUT.pth

IN is the ``*_imagenet_state_dict_quarts.pth`` from FFNet's release, or the release zip
(``ffnet78S.zip``: its one ``*_imagenet_state_dict*.pth`` member is read, or the one named by
``--member``). It is loaded with ``weights_only=True``. ``--arch`` is the ImageNet model's
ResNet (``78S``, ``150``, ...), without the ``d`` of the segmentation model that starts from
it. OUT holds ``{'state_dict', 'meta'}``; write it to
``$DENSEBOX_HOME/checkpoints/<zoo name>.pth`` for the recipes' ``zoo://<zoo name>``.
"""
import argparse
import fnmatch
import io
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.converters.ffnet import convert_ffnet_imagenet_checkpoint  # noqa: E402
from densebox.engine import atomic_save_checkpoint, safe_torch_load  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='FFNet ImageNet state dict (.pth) or release zip')
    parser.add_argument('dst', help='densebox checkpoint to write')
    parser.add_argument('--arch', required=True, help="ImageNet model's ResNet, e.g. 78S, 150")
    parser.add_argument('--member', default=None,
                        help='for a zip: the member to read (default: its one '
                             '*_imagenet_state_dict*.pth)')
    return parser.parse_args(argv)


def _load(src: Path, member):
    if not zipfile.is_zipfile(src):
        return safe_torch_load(str(src), map_location='cpu')
    with zipfile.ZipFile(src) as zf:
        names = zf.namelist()
        if member is None:
            found = fnmatch.filter(names, '*_imagenet_state_dict*.pth')
            if len(found) != 1:
                raise SystemExit(f'{src}: expected one *_imagenet_state_dict*.pth member, found '
                                 f'{found or names[:6]}; pass --member')
            member = found[0]
        if member not in names:
            raise SystemExit(f'{src}: no member {member!r}')
        return safe_torch_load(io.BytesIO(zf.read(member)), map_location='cpu')


def main(argv=None) -> dict:
    args = parse_args(argv)
    src = Path(args.src)
    if not src.is_file():
        raise SystemExit(f'{src}: no such file')
    checkpoint = _load(src, args.member)
    if not isinstance(checkpoint, dict):
        raise SystemExit(f'{src}: expected a state dict, got {type(checkpoint).__name__}')
    state = convert_ffnet_imagenet_checkpoint(checkpoint, arch=args.arch)
    converted = {'state_dict': state, 'meta': {'converted_from': f'FFNet {args.arch} ImageNet'}}
    atomic_save_checkpoint(converted, str(args.dst))
    print(f'{src} -> {args.dst}: {len(state)} backbone tensors of FFNetResNet({args.arch!r})')
    return converted


if __name__ == '__main__':
    main()

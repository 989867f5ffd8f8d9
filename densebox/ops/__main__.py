"""Build densebox.ops ahead of time and report: ``python -m densebox.ops build [--cuda]``.

``build`` compiles the C++ kernels (and the CUDA kernels when a GPU is visible, or with
``--cuda`` even without one: compile only, for sm_90 unless TORCH_CUDA_ARCH_LIST says
otherwise), then checks the result against torchvision on a small CPU problem.
``info`` prints the cache folder and the backend each device would use.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from . import _ext


def _smoke_test(module) -> str:
    import torchvision
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=gen) * 40 + 1], dim=1)
    scores = torch.rand(200, generator=gen)
    ours = module.nms(boxes, scores, None, 0.5)
    theirs = torchvision.ops.nms(boxes, scores, 0.5)
    if not torch.equal(ours, theirs):
        raise SystemExit('densebox.ops: the built nms disagrees with torchvision.ops.nms')
    return f'nms agrees with torchvision on 200 boxes ({ours.numel()} kept)'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m densebox.ops', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    b = sub.add_parser('build', help='compile the extension now and report')
    group = b.add_mutually_exclusive_group()
    group.add_argument('--cuda', dest='cuda', action='store_true', default=None,
                       help='also compile the CUDA kernels, even with no GPU visible')
    group.add_argument('--no-cuda', dest='cuda', action='store_false',
                       help='compile the CPU kernels only')
    b.add_argument('-v', '--verbose', action='store_true', help='show compiler output')
    sub.add_parser('info', help='print the cache folder and the backend per device')
    args = parser.parse_args(argv)

    print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), '
          f'GPU visible: {torch.cuda.is_available()}')
    print(f'cache: {_ext.cache_root()}')
    if args.command == 'info':
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
        for device in devices:
            print(f'backend for {device}: {_ext.backend(device)}')
        return 0

    with_cuda = torch.cuda.is_available() if args.cuda is None else args.cuda
    if with_cuda:
        print(f'CUDA toolkit: {_ext.find_cuda_home()}')
    start = time.perf_counter()
    try:
        module = _ext.build(with_cuda, verbose=args.verbose)
    except _ext.ExtensionBuildError as error:
        print(f'FAILED: {error}', file=sys.stderr)
        return 1
    print(f'built torch.ops.{module.name} (CUDA kernels: {module.with_cuda()}) in '
          f'{time.perf_counter() - start:.1f} s')
    print(f'folder: {_ext.cache_root() / _ext.build_tag(with_cuda)}')
    print(_smoke_test(module))
    return 0


if __name__ == '__main__':
    sys.exit(main())

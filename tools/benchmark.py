"""Benchmarks.

    python tools/benchmark.py inference [--device cpu cuda] [--batch-sizes 1 32] [--amp]
                                        [--iters 5] [--repeats 3] [--no-cpu-fast-paths]
                                        [--out results.json]

``inference``: densebox SSD300 against torchvision's ssd300_vgg16 with identical (random,
converted) weights, end to end from host uint8 images to results on the host, side by side
in one run (see densebox/benchmark/e2e.py for exactly what is timed). Prints img/s of both
and densebox / torchvision (above 1: densebox is faster) and writes JSON with --out.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densebox.benchmark.e2e import format_table, run_inference_benchmark  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    inf = sub.add_parser('inference', help='end-to-end SSD300 inference, densebox vs torchvision')
    inf.add_argument('--device', nargs='+', choices=('cpu', 'cuda'), default=None,
                     help='devices to run on (default: cpu, and cuda when available)')
    inf.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
    inf.add_argument('--amp', action='store_true',
                     help='also run with torch.autocast (float16 on CUDA, bfloat16 on the CPU)')
    inf.add_argument('--amp-only', action='store_true', help='run only with autocast')
    inf.add_argument('--iters', type=int, default=5, help='timed calls per repeat')
    inf.add_argument('--warmup', type=int, default=1, help='untimed calls per repeat')
    inf.add_argument('--repeats', type=int, default=3, help='repeats; the median is reported')
    inf.add_argument('--image-size', nargs=2, type=int, default=[375, 500], metavar=('H', 'W'))
    inf.add_argument('--seed', type=int, default=0)
    inf.add_argument('--config', default=None,
                     help='densebox config (default: configs/ssd300_coco_torchvision.py)')
    inf.add_argument('--no-cpu-fast-paths', dest='cpu_fast_paths', action='store_false',
                     help="densebox's CPU convs and pools on ATen's kernels (as "
                          "torchvision's), without densebox.ops.speed_up_cpu_inference")
    inf.add_argument('--out', default=None, help='write the results as JSON here')
    args = parser.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.iters < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error('batch sizes, --iters and --repeats must be >= 1, --warmup >= 0')
    if args.config is not None:  # found as every tool finds configs, from any folder
        from densebox.test_options import model_task
        from densebox.tools_common import load_tool_config, resolve_config
        args.config = resolve_config(args.config)[0]
        if model_task(load_tool_config(args.config).model) != 'det':
            parser.error(f'--config {args.config}: the inference benchmark runs torchvision\'s '
                         'ssd300_vgg16 and densebox on the same converted weights, so it needs '
                         'an SSD300 detector config (e.g. configs/ssd300_coco_torchvision.py)')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    devices = args.device or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    if 'cuda' in devices and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no CUDA device')
    amp_modes = [True] if args.amp_only else ([False, True] if args.amp else [False])
    results = run_inference_benchmark(
        devices=devices, batch_sizes=args.batch_sizes, amp_modes=amp_modes, iters=args.iters,
        warmup=args.warmup, repeats=args.repeats, image_hw=args.image_size, seed=args.seed,
        config=args.config, cpu_fast_paths=args.cpu_fast_paths,
        log=lambda line: print(line, flush=True))
    print()
    print(format_table(results['results']))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f'wrote {out}')
    return results


if __name__ == '__main__':
    main()

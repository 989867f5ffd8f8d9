"""Benchmarks: densebox side by side with what a user would pick instead, in one run.

    python tools/benchmark.py MODE [options] [--out results.json]

Modes (each prints a table, writes JSON with --out, and checks that both sides computed
the same thing; the library code and exactly what is timed: densebox/benchmark/*.py):

  inference  SSD300 end to end against torchvision's ssd300_vgg16 with identical weights
             (e2e.py); with --models also SSDLite beside ssdlite320_mobilenet_v3_large and
             the segmenters (Mobile DeepLabv3, FFNet 78S) at 1024x2048 beside
             deeplabv3_mobilenet_v3_large: img/s and FLOPs side by side (models.py)
  deploy     densebox eager vs its ONNX export in onnxruntime vs OpenVINO on the CPU, same
             weights, same detections (deploy.py)
  train      a full SSD300 training step vs torchvision's on the same batch and weights,
             optionally with AMP / channels-last (train.py)
  data       images/s per worker process of the SSD300 and Cityscapes training pipelines on
             generated data, beside torchvision's SSD augmentation (data.py)
  eval       COCO bbox evaluation of a generated COCO-val-sized set: CocoMetric vs plain
             pycocotools vs faster-coco-eval, stats identical to 4 decimals (coco_eval.py)
  retrieval  densebox's embedding store + exact top-k vs faiss IndexFlatIP on 1M / 10M
             simulated 768-d embeddings (retrieval.py)

Sides take turns ``--repeats`` times and the table shows medians (JSON: every repeat).
Timings mean something only on an idle machine (docs/benchmarks.md).
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = ('inference', 'deploy', 'train', 'data', 'eval', 'retrieval')


def _common(p: argparse.ArgumentParser, iters: int = 5, repeats: int = 3, warmup: int = 1):
    p.add_argument('--iters', type=int, default=iters, help='timed calls per repeat')
    p.add_argument('--warmup', type=int, default=warmup, help='untimed calls per repeat')
    p.add_argument('--repeats', type=int, default=repeats,
                   help='repeats, sides alternating; the median is reported')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None, help='write the results as JSON here')


def _devices(p: argparse.ArgumentParser):
    p.add_argument('--device', nargs='+', choices=('cpu', 'cuda'), default=None,
                   help='devices to run on (default: cpu, and cuda when available)')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 2)[2])
    sub = parser.add_subparsers(dest='command', required=True)

    inf = sub.add_parser('inference', help='end-to-end inference: SSD300 vs torchvision '
                                           '(and SSDLite, segmenters with --models)')
    _devices(inf)
    inf.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
    inf.add_argument('--amp', action='store_true',
                     help='also run with torch.autocast (float16 on CUDA, bfloat16 on the CPU)')
    inf.add_argument('--amp-only', action='store_true', help='run only with autocast')
    inf.add_argument('--image-size', nargs=2, type=int, default=[375, 500], metavar=('H', 'W'))
    inf.add_argument('--config', default=None,
                     help='densebox config (default: configs/ssd300_coco_torchvision.py)')
    inf.add_argument('--no-cpu-fast-paths', dest='cpu_fast_paths', action='store_false',
                     help="densebox's CPU convs and pools on ATen's kernels (as "
                          "torchvision's), without densebox.ops.speed_up_cpu_inference")
    inf.add_argument('--models', nargs='*', default=[],
                     choices=('ssdlite', 'mobile_deeplabv3', 'ffnet_78s'),
                     help='also these, beside their torchvision counterparts (CPU, batch 1 '
                          'for the segmenters at --seg-size)')
    inf.add_argument('--no-ssd300', dest='ssd300', action='store_false',
                     help='skip the SSD300 comparison (only --models)')
    inf.add_argument('--seg-size', nargs=2, type=int, default=[1024, 2048], metavar=('H', 'W'))
    _common(inf)

    dep = sub.add_parser('deploy', help='CPU: eager vs onnxruntime vs OpenVINO (SSD300)')
    dep.add_argument('--backends', nargs='+',
                     default=['torch', 'onnxruntime', 'openvino', 'auto'],
                     choices=('torch', 'onnxruntime', 'openvino', 'auto'))
    dep.add_argument('--batch-sizes', nargs='+', type=int, default=[1])
    dep.add_argument('--image-size', nargs=2, type=int, default=[375, 500], metavar=('H', 'W'))
    dep.add_argument('--no-cpu-fast-paths', dest='cpu_fast_paths', action='store_false')
    _common(dep)

    tr = sub.add_parser('train', help='SSD300 training step vs torchvision')
    _devices(tr)
    tr.add_argument('--batch-sizes', nargs='+', type=int, default=[4])
    tr.add_argument('--amp', action='store_true', help='also with autocast')
    tr.add_argument('--amp-only', action='store_true')
    tr.add_argument('--channels-last', action='store_true', help='also in channels-last')
    tr.add_argument('--channels-last-only', action='store_true')
    tr.add_argument('--no-cpu-fast-paths', dest='cpu_fast_paths', action='store_false',
                    help="densebox's convs in the input's layout, without "
                         'densebox.ops.speed_up_cpu_training')
    _common(tr, iters=3)

    da = sub.add_parser('data', help='training pipelines: images/s per worker')
    da.add_argument('--pipelines', nargs='+', default=['ssd300', 'cityscapes'],
                    choices=('ssd300', 'cityscapes'))
    da.add_argument('--num-items', type=int, default=32, help='items per timed repeat')
    da.add_argument('--coco-images', type=int, default=64)
    da.add_argument('--cityscapes-images', type=int, default=8)
    da.add_argument('--workdir', default=None, help='where the generated files go (temporary)')
    _common(da)

    ev = sub.add_parser('eval', help='COCO bbox evaluation: CocoMetric vs pycocotools')
    ev.add_argument('--num-images', type=int, default=5000)
    ev.add_argument('--dets-per-image', type=int, default=100)
    ev.add_argument('--impls', nargs='+', default=['densebox', 'pycocotools', 'faster_coco_eval'],
                    choices=('densebox', 'pycocotools', 'faster_coco_eval'))
    ev.add_argument('--workdir', default=None)
    _common(ev, repeats=3)

    re_ = sub.add_parser('retrieval', help='embedding store + exact top-k vs faiss')
    re_.add_argument('--sizes', nargs='+', type=int, default=[1_000_000, 10_000_000])
    re_.add_argument('--dim', type=int, default=768)
    re_.add_argument('--k', type=int, default=50)
    re_.add_argument('--single-queries', type=int, default=20,
                     help='single-query calls timed (median reported)')
    re_.add_argument('--batch-queries', type=int, default=256, help='queries in the batch call')
    re_.add_argument('--threads', type=int, default=None, help='threads of both (default torch)')
    re_.add_argument('--chunk-rows', type=int, default=65536)
    re_.add_argument('--impls', nargs='+', default=['densebox', 'faiss'],
                     choices=('densebox', 'faiss'))
    re_.add_argument('--workdir', default=None,
                     help='where the store is written (needs 2 * rows * dim bytes)')
    re_.add_argument('--seed', type=int, default=0)
    re_.add_argument('--out', default=None)

    args = parser.parse_args(argv)
    for name in ('batch_sizes', 'iters', 'repeats'):
        value = getattr(args, name, None)
        if value is not None and min(value if isinstance(value, list) else [value]) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if getattr(args, 'warmup', 0) < 0:
        parser.error('--warmup must be >= 0')
    if getattr(args, "config", None) is not None:  # found as every tool finds configs
        from densebox.test_options import model_task
        from densebox.config import resolve_config
        from densebox.tools_common import load_tool_config
        args.config = resolve_config(args.config)[0]
        if model_task(load_tool_config(args.config).model) != 'det':
            parser.error(f'--config {args.config}: the inference benchmark runs torchvision\'s '
                         'ssd300_vgg16 and densebox on the same converted weights, so it needs '
                         'an SSD300 detector config (e.g. configs/ssd300_coco_torchvision.py)')
    return args


def _devices_of(args):
    devices = args.device or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    if 'cuda' in devices and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no CUDA device')
    return devices


def _modes(flag: bool, only: bool):
    return [True] if only else ([False, True] if flag else [False])


def run(args) -> tuple:
    """(results dict, table text) of one mode."""
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.command == 'inference':
        from densebox.benchmark.e2e import format_table, run_inference_benchmark
        from densebox.benchmark.models import format_models_table, run_models_benchmark
        out, tables = {}, []
        if args.ssd300:
            out = run_inference_benchmark(
                devices=_devices_of(args), batch_sizes=args.batch_sizes,
                amp_modes=_modes(args.amp, args.amp_only), iters=args.iters,
                warmup=args.warmup, repeats=args.repeats, image_hw=args.image_size,
                seed=args.seed, config=args.config, cpu_fast_paths=args.cpu_fast_paths, log=log)
            tables.append(format_table(out['results']))
        if args.models:
            hw = {m: args.seg_size for m in args.models if m != 'ssdlite'}
            if 'ssdlite' in args.models:
                hw['ssdlite'] = args.image_size
            models = []
            for name in args.models:
                batches = args.batch_sizes if name == 'ssdlite' else [1]
                part = run_models_benchmark([name], batches, args.iters, args.warmup,
                                            args.repeats, args.seed, hw, log)
                models += part['results']
            out['models'] = dict(results=models, settings=part['settings'])
            tables.append(format_models_table(models))
        return out, '\n\n'.join(tables)
    if args.command == 'deploy':
        from densebox.benchmark.deploy import format_deploy_table, run_deploy_benchmark
        out = run_deploy_benchmark(args.backends, args.batch_sizes, args.iters, args.warmup,
                                   args.repeats, args.image_size, args.seed,
                                   cpu_fast_paths=args.cpu_fast_paths, log=log)
        return out, format_deploy_table(out['results'])
    if args.command == 'train':
        from densebox.benchmark.train import format_train_table, run_train_benchmark
        out = run_train_benchmark(_devices_of(args), args.batch_sizes,
                                  _modes(args.amp, args.amp_only),
                                  _modes(args.channels_last, args.channels_last_only),
                                  args.iters, args.warmup, args.repeats, args.seed,
                                  cpu_fast_paths=args.cpu_fast_paths, log=log)
        return out, format_train_table(out['results'])
    if args.command == 'data':
        from densebox.benchmark.data import format_data_table, run_data_benchmark
        out = run_data_benchmark(args.pipelines, args.num_items, args.repeats, args.seed,
                                 args.coco_images, args.cityscapes_images, args.workdir, log)
        return out, format_data_table(out['results'])
    if args.command == 'eval':
        from densebox.benchmark.coco_eval import format_eval_table, run_eval_benchmark
        out = run_eval_benchmark(args.num_images, args.dets_per_image, args.repeats, args.seed,
                                 args.workdir, args.impls, log)
        return out, format_eval_table(out)
    from densebox.benchmark.retrieval import format_retrieval_table, run_retrieval_benchmark
    out = run_retrieval_benchmark(args.sizes, args.dim, args.k, args.single_queries,
                                  args.batch_queries, args.threads, args.seed, args.chunk_rows,
                                  args.workdir, args.impls, log=log)
    return out, format_retrieval_table(out['results'])


def main(argv=None) -> dict:
    args = parse_args(argv)
    results, table = run(args)
    print()
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=float))
        print(f'wrote {out}')
    return results


if __name__ == '__main__':
    main()

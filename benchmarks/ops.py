"""densebox.ops against torchvision.ops, side by side in one run.

Cases: nms at 1k / 10k / 50k boxes; batched_nms of 10k boxes over 80 classes, and of a
detector batch (4 images on the CPU, 32 on CUDA, x 80 classes x 100 candidates, one group
per image and class), and that batch as the fixed-shape table segmented_nms reduces (rows
sorted by score; against torchvision's batched_nms of the same boxes); roi_align forward of 1000 RoIs on a 1x256x200x304 map (7x7, scale
1/4, sampling 2, aligned). On the CPU and, when one is visible, on CUDA. Every case also checks that both
libraries return the same result. Prints a table (median milliseconds, ratio
torchvision / densebox: above 1 means densebox is faster) and writes JSON with --out.

    PYTHONPATH=. python benchmarks/ops.py --out bench_ops.json [--device cpu|cuda|all]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

import densebox.ops as dops

IMAGE_H, IMAGE_W = 800, 1333


def realistic_boxes(n: int, device: str, seed: int = 0,
                    classes: int = 80) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detector-like output: ~n/20 objects in an 800x1333 image, ~20 jittered boxes each.

    Box corners are whole pixels.

    Returns boxes (n, 4) xyxy float32, scores (n,) float32 and labels (n,) int64 on
    ``device``: a box mostly carries its object's class, 20% of boxes another one.
    """
    gen = torch.Generator().manual_seed(seed)
    objects = max(1, n // 20)
    centers = torch.rand(objects, 2, generator=gen) * torch.tensor([IMAGE_W, IMAGE_H])
    sizes = torch.exp(torch.empty(objects, 2).uniform_(3.0, 5.5, generator=gen))  # 20..245 px
    pick = torch.randint(0, objects, (n,), generator=gen)
    ctr = centers[pick] + torch.randn(n, 2, generator=gen) * sizes[pick] * 0.2
    wh = sizes[pick] * (0.6 + 0.8 * torch.rand(n, 2, generator=gen))
    # whole pixels: float32 areas are then exact, so the equality check between libraries
    # cannot trip over multiply-add fusion differences between compilers
    boxes = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1).round()
    scores = torch.rand(n, generator=gen)
    labels = torch.randint(0, classes, (objects,), generator=gen)[pick]
    noisy = torch.rand(n, generator=gen) < 0.2
    labels[noisy] = torch.randint(0, classes, (int(noisy.sum()),), generator=gen)
    return boxes.to(device), scores.to(device), labels.to(device)


def timed(fns: list[Callable[[], object]], device: str, repeats: int,
          warmup: int = 1) -> list[float]:
    """Median wall time of each fn() in milliseconds, device synchronised around each call.

    The functions take turns within each repeat, so a load change on a shared machine
    affects them alike.
    """
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            sync()
            spent.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def cases(device: str) -> list[dict]:
    """Benchmark cases: name, the two callables, how to compare results, repeats."""
    cpu = device == 'cpu'
    out = []
    for n, reps in ((1000, 30 if cpu else 50), (10_000, 7 if cpu else 30),
                    (50_000, 3 if cpu else 10)):
        boxes, scores, _ = realistic_boxes(n, device, seed=n)
        out.append(dict(
            name=f'nms {n // 1000}k boxes', repeats=reps,
            densebox=lambda b=boxes, s=scores: dops.nms(b, s, 0.5),
            torchvision=lambda b=boxes, s=scores: torchvision.ops.nms(b, s, 0.5),
            same=torch.equal))

    boxes, scores, labels = realistic_boxes(10_000, device, seed=7)

    def same_kept(a, b, s=scores):
        # torchvision's per-class path orders equal scores arbitrarily (unstable sort):
        # compare the kept set and the score sequence
        return torch.equal(a.sort().values, b.sort().values) and torch.equal(s[a], s[b])

    out.append(dict(
        name='batched_nms 10k boxes, 80 classes', repeats=5 if cpu else 30,
        densebox=lambda: dops.batched_nms(boxes, scores, labels, 0.5),
        torchvision=lambda: torchvision.ops.batched_nms(boxes, scores, labels, 0.5),
        same=same_kept))

    # a detector's batch post-processing: images x 80 classes x 100 candidates, one group
    # per image and class (torchvision loops over the groups in Python here, on both
    # devices; 8 images already take it 15 s per call on the 2-core CPU, hence 4 there)
    images, classes, k = (4 if cpu else 32), 80, 100
    boxes_b, scores_b, _ = realistic_boxes(images * classes * k, device, seed=9)
    groups_b = torch.arange(images * classes, device=device).repeat_interleave(k)
    out.append(dict(
        name=f'batched_nms {images * classes * k // 1000}k boxes, {images} img x 80 cls',
        repeats=2 if cpu else 10,
        densebox=lambda: dops.batched_nms(boxes_b, scores_b, groups_b, 0.45),
        torchvision=lambda: torchvision.ops.batched_nms(boxes_b, scores_b, groups_b, 0.45),
        same=lambda a, b: same_kept(a, b, scores_b)))

    # the same batch as the fixed-shape table SSDHead suppresses: rows sorted by score,
    # densebox.ops.segmented_nms returns a (G, k) keep mask without syncing the host
    order = scores_b.view(-1, k).argsort(dim=1, descending=True, stable=True)
    flat_order = (order + torch.arange(0, images * classes * k, k, device=device)[:, None]).flatten()
    table = boxes_b[flat_order].view(-1, k, 4)

    def same_mask(mask, kept):
        expected = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
        expected[kept] = True
        return torch.equal(mask.flatten(), expected)

    out.append(dict(
        name=f'segmented_nms {images} img x 80 cls x {k} (vs batched_nms)',
        repeats=5 if cpu else 30,
        densebox=lambda: dops.segmented_nms(table, None, 0.45),
        torchvision=lambda: torchvision.ops.batched_nms(
            table.flatten(0, 1), scores_b[flat_order], groups_b, 0.45),
        same=same_mask))

    gen = torch.Generator().manual_seed(8)
    feats = torch.randn(1, 256, 200, 304, generator=gen).to(device)
    roi_boxes = realistic_boxes(1000, 'cpu', seed=8)[0]  # image pixels; the map is 1/4
    rois = torch.cat([torch.zeros(1000, 1), roi_boxes], dim=1).to(device)
    args = ((7, 7), 0.25, 2, True)
    out.append(dict(
        name='roi_align fwd 1000 RoIs, 1x256x200x304', repeats=3 if cpu else 30,
        densebox=lambda: dops.roi_align(feats, rois, *args),
        torchvision=lambda: torchvision.ops.roi_align(feats, rois, *args),
        same=lambda a, b: torch.allclose(a, b, atol=1e-5, rtol=0)))
    return out


def machine() -> dict:
    info = dict(python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, cpu=platform.processor() or 'unknown',
                cpu_threads=torch.get_num_threads(), os_cpu_count=os.cpu_count())
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                info['cpu'] = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
        info['cuda'] = torch.version.cuda
    return info


def run(devices: list[str]) -> dict:
    results = []
    for device in devices:
        start = time.perf_counter()
        build = dops.backend(device)  # builds the extension on first use
        setup_s = time.perf_counter() - start
        if build != 'ext':
            print(f'warning: densebox.ops uses {build} on {device}; the comparison is moot',
                  file=sys.stderr)
        for case in cases(device):
            ours, theirs = case['densebox'](), case['torchvision']()
            same = bool(case['same'](ours, theirs))
            # the calls above warmed the CPU path; CUDA gets one more untimed round
            tv_ms, db_ms = timed([case['torchvision'], case['densebox']], device,
                                 case['repeats'], warmup=0 if device == 'cpu' else 1)
            results.append(dict(case=case['name'], device=device, repeats=case['repeats'],
                                torchvision_ms=tv_ms, densebox_ms=db_ms,
                                ratio_tv_over_densebox=tv_ms / db_ms, same_result=same,
                                backend=build))
            row = results[-1]
            print(f"{row['case']:<42} {device:<5} tv {tv_ms:9.2f} ms   densebox "
                  f"{db_ms:9.2f} ms   x{row['ratio_tv_over_densebox']:.2f}"
                  f"{'' if same else '   RESULTS DIFFER'}", flush=True)
        results.append(dict(case='(backend setup incl. any build)', device=device,
                            seconds=setup_s))
    return dict(machine=machine(), results=results)


def table(report: dict) -> str:
    lines = ['| case | device | torchvision ms | densebox ms | tv / densebox | same result |',
             '|---|---|---:|---:|---:|---|']
    for r in report['results']:
        if 'torchvision_ms' in r:
            lines.append(f"| {r['case']} | {r['device']} | {r['torchvision_ms']:.2f} | "
                         f"{r['densebox_ms']:.2f} | {r['ratio_tv_over_densebox']:.2f} | "
                         f"{'yes' if r['same_result'] else 'NO'} |")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', choices=['cpu', 'cuda', 'all'], default='all',
                        help="'all': the CPU, and CUDA when available (default)")
    parser.add_argument('--out', type=Path, help='write the results as JSON here')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device visible')
    devices = ['cpu', 'cuda'] if args.device == 'all' else [args.device]
    devices = [d for d in devices if d == 'cpu' or torch.cuda.is_available()]
    report = run(devices)
    print()
    print(f"machine: {report['machine']}")
    print(table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f'wrote {args.out}')
    return 0 if all(r.get('same_result', True) for r in report['results']) else 1


if __name__ == '__main__':
    sys.exit(main())

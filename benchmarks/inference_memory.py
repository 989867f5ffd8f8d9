"""Does memory stay flat over many ``densebox.inference`` calls? Resident memory (RSS) of
this process, sampled while one model answers the same kinds of calls again and again.

The model is the config's (random weights unless ``--checkpoint``), on the CPU by default.
After ``--warmup`` calls (first-call costs: kernel timing, caches, allocator pools) the RSS
is sampled every ``--every`` calls until ``--calls`` more calls are done. Each call gets
an image from a small rotating set (array inputs of a few sizes, and the same images as
files when ``--files``), so that per-size caches fill during the warm-up and a leak shows
as steady growth afterwards.

Prints the RSS after the warm-up, at the end, the growth and the least-squares slope over
the samples (KiB per call), and writes everything as JSON with ``--out``:

    PYTHONPATH=. python benchmarks/inference_memory.py --calls 1000 [--files] [--out mem.json]

Numbers depend on the allocator and the machine; compare runs of one machine only.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np

QUICKSTART = 'configs/quickstart_ssd_shapes.py'
SIZES = ((96, 128), (120, 90), (64, 64), (150, 200))  # (H, W) of the rotating inputs


def rss_bytes() -> int:
    """Resident set size of this process now, in bytes (``/proc/self/statm``; on other
    systems ``ru_maxrss``, a peak, which can only show growth)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == 'darwin' else peak * 1024


def make_inputs(with_files: bool, folder: str) -> list:
    """The rotating inputs: one random image per size, as arrays (and as PNG files)."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, size + (3, )).astype(np.uint8) for size in SIZES]
    inputs = list(arrays)
    if with_files:
        from PIL import Image
        for k, arr in enumerate(arrays):
            path = os.path.join(folder, f'input_{k}.png')
            Image.fromarray(arr).save(path)
            inputs.append(path)
    return inputs


def slope_per_call(calls: list, rss: list) -> float:
    """Least-squares slope of RSS (bytes) against the call number: bytes per call."""
    if len(calls) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(calls, float), np.asarray(rss, float), 1)[0])


def measure(model, inputs: list, calls: int, warmup: int, every: int) -> dict:
    """Run ``warmup`` then ``calls`` inference calls over ``inputs``; sample RSS every
    ``every`` calls after the warm-up (after a ``gc.collect()``)."""
    from densebox.apis import inference
    for k in range(warmup):
        inference(inputs[k % len(inputs)], model)
    gc.collect()
    samples = [(0, rss_bytes())]
    start = time.perf_counter()
    for k in range(1, calls + 1):
        inference(inputs[k % len(inputs)], model)
        if k % every == 0 or k == calls:
            gc.collect()
            samples.append((k, rss_bytes()))
    seconds = time.perf_counter() - start
    numbers, rss = [s[0] for s in samples], [s[1] for s in samples]
    return dict(calls=calls, warmup=warmup, inputs=len(inputs), seconds=seconds,
                rss_after_warmup_mib=rss[0] / 2**20, rss_end_mib=rss[-1] / 2**20,
                growth_mib=(rss[-1] - rss[0]) / 2**20,
                max_above_start_mib=(max(rss) - rss[0]) / 2**20,
                slope_kib_per_call=slope_per_call(numbers, rss) / 1024,
                samples=[dict(call=c, rss_mib=r / 2**20) for c, r in samples])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=QUICKSTART)
    parser.add_argument('--checkpoint', default=None)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--calls', type=int, default=1000)
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument('--every', type=int, default=50)
    parser.add_argument('--files', action='store_true', help='also read the inputs from files')
    parser.add_argument('--out', default=None, help='write the result as JSON')
    args = parser.parse_args(argv)

    import torch

    from densebox.apis import init_model
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # random weights without --checkpoint
        model = init_model(args.config, args.checkpoint, device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        inputs = make_inputs(args.files, folder)
        result = measure(model, inputs, args.calls, args.warmup, args.every)
    result.update(config=args.config, device=args.device, torch=torch.__version__,
                  torch_threads=torch.get_num_threads(), python=platform.python_version(),
                  machine=platform.processor() or platform.machine(),
                  load_average=list(os.getloadavg()) if hasattr(os, 'getloadavg') else None)
    print(f'{args.calls} calls after {args.warmup} warm-up calls ({len(inputs)} inputs, '
          f'{result["seconds"]:.1f} s): RSS {result["rss_after_warmup_mib"]:.1f} -> '
          f'{result["rss_end_mib"]:.1f} MiB, growth {result["growth_mib"]:+.2f} MiB, '
          f'slope {result["slope_kib_per_call"]:+.3f} KiB/call, load {result["load_average"]}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()

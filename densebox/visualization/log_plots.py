"""Loss / lr / metric curves of training runs: ``tools/analysis/plot_logs.py`` and
``densebox plot-logs``.

    densebox plot-logs work_dirs/ssd300_voc                      # one run
    densebox plot-logs work_dirs/a work_dirs/b --legend base new  # two runs overlaid
    densebox plot-logs work_dirs/a --keys loss lr pascal_voc/mAP --out curves.png

A run is a work dir (every ``<timestamp>/vis_data/scalars.json`` under it, oldest first, so
a resumed run continues its curve), one timestamp folder, or a ``scalars.json`` file: the
JSON-lines file mmengine's ``LocalVisBackend`` writes. Training records (they carry
``iter``) are drawn against the iteration, validation records (metrics, whose ``step`` is
the epoch or iteration of the validation) against their step.
"""
import argparse
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['find_scalar_files', 'load_scalars', 'collect_series', 'default_keys',
           'plot_logs', 'plot_logs_main']

_SKIP = {'step', 'iter', 'epoch', 'time', 'data_time', 'memory'}


def find_scalar_files(run: str) -> List[str]:
    """The ``scalars.json`` files of a run (see the module docstring), oldest first."""
    if osp.isfile(run):
        return [run]
    if not osp.isdir(run):
        raise FileNotFoundError(f'{run}: neither a work dir nor a scalars.json file')
    direct = osp.join(run, 'vis_data', 'scalars.json')
    if osp.isfile(direct):
        return [direct]
    found = sorted(glob.glob(osp.join(run, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(f'{run}: no <timestamp>/vis_data/scalars.json under it (is it '
                                'the work dir of a densebox / mmengine run?)')
    return found


def load_scalars(run: str) -> List[dict]:
    """Every record of a run's scalars files, in file order."""
    records = []
    for path in find_scalar_files(run):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f'{path}, line {n}: not JSON ({err})') from None
                if isinstance(record, dict):
                    records.append(record)
    return records


def collect_series(records: Sequence[dict]) -> Dict[str, Tuple[np.ndarray, np.ndarray, str]]:
    """``{key: (x, y, x label)}`` of numeric keys; a later record at the same x replaces an
    earlier one (a resumed run repeats the steps after its checkpoint)."""
    points: Dict[str, Dict[float, float]] = {}
    xlabels: Dict[str, str] = {}
    for record in records:
        train = 'iter' in record
        x = record.get('iter') if train else record.get('step')
        if x is None:
            continue
        for key, value in record.items():
            if key in _SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            points.setdefault(key, {})[float(x)] = float(value)
            xlabels.setdefault(key, 'iteration' if train else 'validation step')
    series = {}
    for key, xy in points.items():
        xs = np.array(sorted(xy))
        series[key] = (xs, np.array([xy[x] for x in xs]), xlabels[key])
    return series


def default_keys(series: Dict[str, tuple]) -> List[str]:
    """The losses (``loss`` first), ``lr``, then the metrics (keys with a ``/``)."""
    losses = sorted((k for k in series if k.startswith('loss') or '.loss' in k),
                    key=lambda k: (k != 'loss', k))
    lrs = [k for k in series if k == 'lr' or k.endswith('lr')]
    metrics = sorted(k for k in series if '/' in k and k not in lrs)
    return losses + [k for k in lrs if k not in losses] + metrics


def plot_logs(runs: Sequence[str], out: str, keys: Optional[Sequence[str]] = None,
              legend: Optional[Sequence[str]] = None, title: Optional[str] = None) -> str:
    """Draw the runs' curves into ``out`` (PNG); returns the path."""
    from .plots import plot_scalar_curves
    if legend is not None and len(legend) != len(runs):
        raise ValueError(f'--legend: {len(legend)} labels for {len(runs)} runs')
    labels = list(legend) if legend else [osp.basename(osp.normpath(r)) or r for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f'{lab} ({k})' for k, lab in enumerate(labels)]
    data = {}
    for label, run in zip(labels, runs):
        series = collect_series(load_scalars(run))
        if not series:
            raise ValueError(f'{run}: its scalars files hold no numeric values')
        data[label] = series
    if keys:
        known = set().union(*(s.keys() for s in data.values()))
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise KeyError(f'--keys {unknown} are in none of the runs; they have: '
                           f'{", ".join(sorted(known))}')
        keys = list(keys)
    else:
        keys = list(dict.fromkeys(k for s in data.values() for k in default_keys(s)))
    plot_scalar_curves(data, keys, out, title=title)
    return out


def plot_logs_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='densebox plot-logs',
                                description='Loss, learning-rate and metric curves of one or '
                                            'more runs (work dirs), overlaid.')
    p.add_argument('runs', nargs='+', help='work dirs, timestamp folders or scalars.json files')
    p.add_argument('--keys', nargs='+', default=None,
                   help='what to draw, e.g. loss lr coco/bbox_mAP (default: losses, lr, metrics)')
    p.add_argument('--legend', nargs='+', default=None, help='one label per run')
    p.add_argument('--title', default=None)
    p.add_argument('--out', default='curves.png', help='the PNG to write (default curves.png)')
    return p


def plot_logs_main(argv: Optional[List[str]] = None) -> str:
    args = plot_logs_parser().parse_args(argv)
    path = plot_logs(args.runs, args.out, args.keys, args.legend, args.title)
    print(f'curves of {len(args.runs)} run(s) written to {path}')
    return path

"""Charts with matplotlib: PR curves, confusion matrices, training curves.

Every function writes one PNG and returns ``[path]``. Figures are made with
``matplotlib.figure.Figure`` on the Agg canvas (no pyplot state, no display needed) and
their size follows the content: one panel per class in a grid, a confusion matrix cell of
about 0.3 inch, legends outside the axes so that they never cover a curve.
"""
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ['plot_pr_curves', 'plot_pr_grid', 'plot_confusion_matrix', 'plot_scalar_curves',
           'class_colours']

DPI = 110
_MAX_LEGEND = 20  # above this many classes the overview names none of them


def _figure(width_in: float, height_in: float, layout: Optional[str] = 'constrained'):
    """A figure on the Agg canvas; ``layout=None`` for many panels (constrained layout
    takes tens of seconds on 80 of them), placed with ``subplots_adjust`` instead."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> List[str]:
    os.makedirs(osp.dirname(osp.abspath(path)) or '.', exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return [path]


def class_colours(num: int, palette=None) -> np.ndarray:
    """(num, 3) colours in [0, 1]: the data set's palette (shared with the drawings) with
    very light colours darkened so that lines show on white, else densebox's palette."""
    from .palette import resolve_palette
    rgb = resolve_palette(palette, num).astype(np.float64)[:num] / 255.0
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    too_light = luminance > 0.8
    rgb[too_light] *= 0.8 / luminance[too_light, None]
    return rgb


def _mean_curve(curves: Sequence[dict], grid: np.ndarray) -> Optional[np.ndarray]:
    """Mean over classes with ground truth of each class's precision envelope on ``grid``."""
    rows = []
    for c in curves:
        if not c.get('num_gts') or len(c['recall']) == 0:
            continue
        rec, prec = np.asarray(c['recall']), np.asarray(c['precision'])
        envelope = np.maximum.accumulate(prec[::-1])[::-1]
        idx = np.searchsorted(rec, grid, side='left')
        rows.append(np.where(idx < len(rec), envelope[np.minimum(idx, len(rec) - 1)], 0.0))
    return np.mean(rows, axis=0) if rows else None


def _pr_axes(ax, title: Optional[str] = None) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel('recall')
    ax.set_ylabel('precision')
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)


def plot_pr_curves(curves: Sequence[dict], class_names: Sequence[str], path: str,
                   title: str = 'Precision-recall', palette=None) -> List[str]:
    """All classes in one chart, the mean over classes in bold.

    Args:
        curves: per class ``{'recall', 'precision', 'ap', 'num_gts'}`` (recall rising).
        class_names: C names.
        path: the PNG to write.
        palette: the data set's colours (RGB 0-255), so a class has one colour everywhere.
    """
    colours = class_colours(len(class_names), palette)
    named = len(class_names) <= _MAX_LEGEND
    fig = _figure(9.0 if named else 7.0, 6.0)
    ax = fig.add_subplot()
    for k, (name, c) in enumerate(zip(class_names, curves)):
        if len(c['recall']) == 0:
            continue
        label = f"{name} {c['ap']:.3f}" if named and not math.isnan(c['ap']) else None
        ax.plot(c['recall'], c['precision'], color=colours[k], lw=1.2 if named else 0.7,
                alpha=0.9 if named else 0.45, label=label)
    grid = np.linspace(0, 1, 101)
    mean = _mean_curve(curves, grid)
    aps = [c['ap'] for c in curves if not math.isnan(c['ap'])]
    if mean is not None:
        ax.plot(grid, mean, color='black', lw=2.5,
                label=f'mean of {len(aps)} classes, AP {np.mean(aps):.3f}')
    _pr_axes(ax, title)
    if named or mean is not None:
        ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  title='class  AP' if named else None, title_fontsize=8)
    return _save(fig, path)


def plot_pr_grid(curves: Sequence[dict], class_names: Sequence[str], path: str,
                 palette=None) -> List[str]:
    """One small PR chart per class, titled with its name and AP."""
    num = len(class_names)
    cols = max(1, math.ceil(math.sqrt(num)))
    rows = max(1, math.ceil(num / cols))
    colours = class_colours(num, palette)
    width, height = 2.3 * cols, 2.1 * rows
    fig = _figure(width, height, layout=None)
    fig.subplots_adjust(left=0.5 / width, right=1 - 0.15 / width, bottom=0.45 / height,
                        top=1 - 0.3 / height, wspace=0.35, hspace=0.55)
    for k, (name, c) in enumerate(zip(class_names, curves)):
        ax = fig.add_subplot(rows, cols, k + 1)
        if len(c['recall']):
            ax.plot(c['recall'], c['precision'], color=colours[k], lw=1.5)
            ax.fill_between(c['recall'], c['precision'], color=colours[k], alpha=0.15)
        ap = 'no ground truth' if math.isnan(c['ap']) else f"AP {c['ap']:.3f}"
        ax.set_title(f'{name}: {ap}', fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel('precision', fontsize=8)
        if k >= num - cols:
            ax.set_xlabel('recall', fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str,
                          title: str = 'Confusion matrix', normalize: bool = True) -> List[str]:
    """Rows: ground truth, columns: prediction. With ``normalize`` each row is divided by
    its sum (the share of a true class predicted as each class); cells hold the value when
    there are at most 30 classes."""
    matrix = np.asarray(matrix, dtype=np.float64)
    num = len(names)
    if matrix.shape != (num, num):
        raise ValueError(f'plot_confusion_matrix: matrix {matrix.shape} for {num} names')
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    side = min(max(5.0, 0.32 * num + 2.5), 30.0)
    cell_pt = 72.0 * (side - 2.5) / max(num, 1)  # the height of a row, in points
    fig = _figure(side + 1.0, side, layout=None)
    margin = 1.6  # inches for the tick labels (class names) and axis titles
    ax = fig.add_axes((margin / (side + 1.0), margin / side, (side - margin - 0.3) / (side + 1.0),
                       (side - margin - 0.4) / side))
    image = ax.imshow(shown, cmap='Blues', vmin=0, vmax=1 if normalize else None)
    cax = fig.add_axes(((side - 0.2) / (side + 1.0), 0.25, 0.18 / (side + 1.0), 0.5))
    fig.colorbar(image, cax=cax, label='share of the ground-truth row' if normalize else 'count')
    tick_size = float(np.clip(0.45 * cell_pt, 5, 9))
    ax.set_xticks(range(num), labels=names, rotation=90, fontsize=tick_size)
    ax.set_yticks(range(num), labels=names, fontsize=tick_size)
    ax.set_xlabel('predicted')
    ax.set_ylabel('ground truth')
    ax.set_title(title)
    if num <= 30:
        for (i, j), value in np.ndenumerate(shown):
            if matrix[i, j] == 0:
                continue
            text = f'{value:.2f}' if normalize else f'{int(value)}'
            ax.text(j, i, text, ha='center', va='center', fontsize=max(5.0, tick_size - 1),
                    color='white' if value > 0.6 * (shown.max() or 1) else 'black')
    return _save(fig, path)


def plot_scalar_curves(runs: Dict[str, Dict[str, tuple]], keys: Sequence[str], path: str,
                       title: Optional[str] = None) -> List[str]:
    """One chart per key, every run overlaid.

    Args:
        runs: ``{run label: {key: (x (N,), y (N,), x label)}}``.
        keys: the keys to draw, one panel each (a key missing from a run is skipped there).
        path: the PNG to write.
    """
    keys = list(keys)
    if not keys:
        raise ValueError('plot_scalar_curves: no keys to plot')
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = _figure(4.6 * cols + (1.8 if len(runs) > 1 else 0), 3.3 * rows)
    from .palette import get_palette
    colours = get_palette(max(len(runs), 1)).astype(float) / 255.0
    for k, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, k + 1)
        xlabel = None
        for r, (label, series) in enumerate(runs.items()):
            if key not in series:
                continue
            x, y, xlabel = series[key]
            ax.plot(x, y, color=colours[r], lw=1.4, label=label,
                    marker='o' if len(x) <= 30 else None, ms=3)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(xlabel or '')
        ax.grid(alpha=0.3)
        if key == 'lr' or key.endswith('/lr'):
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-3, 3))
    if len(runs) > 1:
        handles, labels = [], []
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc='outside right upper', fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)

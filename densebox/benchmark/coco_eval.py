"""COCO bbox evaluation speed: densebox's ``CocoMetric`` against pycocotools used directly
(and faster-coco-eval used directly), on one generated COCO-val-sized data set.

Every side starts from the same two things: the ground-truth json on disk and the
predictions in memory, one ``(boxes (K, 4) xyxy, scores (K,), labels (K,))`` triple per
image (what a detector's test loop holds), and ends with the 12 COCO summary numbers:

* ``densebox``: ``CocoMetric(ann_file=...)`` (its default backend), ``process`` of the
  per-image samples, ``compute_metrics``;
* ``pycocotools``: ``COCO(ann_file)``, a results list of dicts (xywh) built from the
  predictions, ``loadRes``, ``COCOeval(...).evaluate() / accumulate() / summarize()``;
* ``faster_coco_eval``: the same through ``faster_coco_eval.COCO`` / ``COCOeval_faster``.

The data (:func:`make_coco_case`): ``num_images`` images of 480 x 640 with a COCO-like
count of objects (mean about 7 per image, 80 categories with COCO's ids, about 1% crowd),
and ``dets_per_image`` predictions per image: jittered copies of the objects (some with a
wrong class) and random false positives; the copies' scores are drawn higher.
"""
from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from densebox.converters import COCO_CATEGORY_IDS

STAT_NAMES = ('AP', 'AP50', 'AP75', 'AP_s', 'AP_m', 'AP_l',
              'AR1', 'AR10', 'AR100', 'AR_s', 'AR_m', 'AR_l')
IMPLS = ('densebox', 'pycocotools', 'faster_coco_eval')


def make_coco_case(num_images: int = 5000, dets_per_image: int = 100, seed: int = 0,
                   height: int = 480, width: int = 640) -> tuple:
    """(COCO ground-truth dict, predictions): see the module docstring.

    Returns:
        ``gt``: ``{'images', 'annotations', 'categories'}`` (80 COCO categories);
        ``preds``: a list of ``(image_id, boxes (K, 4) float32 xyxy, scores (K,) float32,
        labels (K,) int64)`` with 0-based labels indexing ``gt['categories']``.
    """
    rng = np.random.default_rng(seed)
    cat_ids = np.asarray(COCO_CATEGORY_IDS, np.int64)
    images, annotations, preds = [], [], []
    for index in range(num_images):
        image_id = index + 1
        images.append(dict(id=image_id, height=height, width=width,
                           file_name=f'{image_id:012d}.jpg'))
        n_gt = int(min(rng.geometric(1 / 7.3), 60))
        # sizes spread over COCO's small / medium / large ranges (side 4 .. 400 px)
        side = np.exp(rng.uniform(np.log(4), np.log(400), (n_gt, 2)))
        xy = rng.uniform(0, 1, (n_gt, 2)) * (np.array([width, height]) - side).clip(min=1)
        gt_boxes = np.concatenate([xy, xy + side], 1).round(2)
        gt_labels = rng.integers(0, len(cat_ids), n_gt)
        crowd = rng.random(n_gt) < 0.01
        for box, label, is_crowd in zip(gt_boxes, gt_labels, crowd):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=int(cat_ids[label]),
                                    bbox=[float(box[0]), float(box[1]), w, h], area=w * h,
                                    iscrowd=int(is_crowd)))
        # predictions: up to 2 jittered copies per object, the rest random boxes
        copies = np.repeat(np.arange(n_gt), rng.integers(0, 3, n_gt))[:dets_per_image]
        wh = gt_boxes[copies, 2:] - gt_boxes[copies, :2]
        jitter = rng.normal(0, 0.1, (len(copies), 4)) * np.concatenate([wh, wh], 1)
        hits = gt_boxes[copies] + jitter
        hit_labels = np.where(rng.random(len(copies)) < 0.1,
                              rng.integers(0, len(cat_ids), len(copies)), gt_labels[copies])
        n_fp = dets_per_image - len(copies)
        side = np.exp(rng.uniform(np.log(4), np.log(400), (n_fp, 2)))
        xy = rng.uniform(0, 1, (n_fp, 2)) * (np.array([width, height]) - side).clip(min=1)
        boxes = np.concatenate([hits, np.concatenate([xy, xy + side], 1)])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = np.concatenate([hit_labels, rng.integers(0, len(cat_ids), n_fp)])
        # objects' copies tend to score higher than false positives (so AP is not ~0)
        scores = np.concatenate([rng.uniform(0.2, 1.0, len(copies)),
                                 rng.uniform(0.0, 0.8, n_fp)]).astype(np.float32)
        preds.append((image_id, boxes.astype(np.float32), scores, labels.astype(np.int64)))
    categories = [dict(id=int(c), name=f'category_{int(c)}') for c in cat_ids]
    return dict(images=images, annotations=annotations, categories=categories), preds


def write_gt(gt: dict, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gt))
    return str(path)


def results_list(preds: Sequence[tuple], cat_ids: Sequence[int]) -> List[dict]:
    """COCO results format (one dict per detection, xywh) as a user of pycocotools writes it."""
    cat_ids = np.asarray(cat_ids)
    out = []
    for image_id, boxes, scores, labels in preds:
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
        out.extend(dict(image_id=image_id, category_id=int(c), bbox=b, score=float(s))
                   for b, s, c in zip(xywh.tolist(), scores.tolist(), cat_ids[labels].tolist()))
    return out


def eval_pycocotools(gt_path: str, preds: Sequence[tuple], cat_ids: Sequence[int]) -> np.ndarray:
    """The 12 summary numbers through pycocotools, used as its README shows."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        ev = COCOeval(gt, gt.loadRes(results_list(preds, cat_ids)), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, np.float64)


def eval_faster_coco_eval(gt_path: str, preds: Sequence[tuple],
                          cat_ids: Sequence[int]) -> np.ndarray:
    """The same through faster-coco-eval's drop-in classes."""
    from faster_coco_eval import COCO, COCOeval_faster
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        ev = COCOeval_faster(gt, gt.loadRes(results_list(preds, cat_ids)), 'bbox',
                             print_function=lambda *a: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, np.float64)


def eval_densebox(gt_path: str, preds: Sequence[tuple], classes: Sequence[str],
                  backend: Optional[str] = None) -> np.ndarray:
    """The 12 summary numbers through densebox's CocoMetric (default backend unless given)."""
    from mmengine.logging import MMLogger

    from densebox.evaluation import CocoMetric
    kwargs = {} if backend is None else dict(backend=backend)
    metric = CocoMetric(ann_file=gt_path, classwise=False, **kwargs)
    metric.dataset_meta = dict(classes=tuple(classes))
    samples = [dict(img_id=image_id,
                    pred_instances=dict(bboxes=boxes, scores=scores, labels=labels))
               for image_id, boxes, scores, labels in preds]
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # the summary table is logged at INFO
    try:
        metric.process(None, samples)
        metric.compute_metrics(metric.results)
    finally:
        logger.setLevel(level)
    return np.asarray(metric.summary_stats, np.float64)


def run_eval_benchmark(num_images: int = 5000, dets_per_image: int = 100, repeats: int = 3,
                       seed: int = 0, workdir: Optional[str] = None,
                       impls: Sequence[str] = IMPLS,
                       log: Callable[[str], None] = print) -> dict:
    """Time the sides alternately ``repeats`` times on one generated data set.

    Returns ``{'env', 'settings', 'results': [{'impl', 'seconds' (median), 'seconds_repeats',
    'stats' (12 numbers), 'error'}], 'identical_to_pycocotools': {impl: bool}}``; identical
    means all 12 numbers equal pycocotools' when rounded to 4 decimals (``max_abs_diff``
    gives the largest difference).
    """
    import tempfile

    from .e2e import environment
    gt, preds = make_coco_case(num_images, dets_per_image, seed)
    cat_ids = [c['id'] for c in gt['categories']]
    classes = [c['name'] for c in gt['categories']]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        gt_path = write_gt(gt, Path(tmp) / 'instances_val.json')
        runners = dict(densebox=lambda: eval_densebox(gt_path, preds, classes),
                       pycocotools=lambda: eval_pycocotools(gt_path, preds, cat_ids),
                       faster_coco_eval=lambda: eval_faster_coco_eval(gt_path, preds, cat_ids))
        seconds: Dict[str, List[float]] = {k: [] for k in impls}
        stats: Dict[str, np.ndarray] = {}
        errors: Dict[str, Optional[str]] = {k: None for k in impls}
        for r in range(repeats):
            for impl in impls:
                if errors[impl]:
                    continue
                start = time.perf_counter()
                try:
                    stats[impl] = runners[impl]()
                except ImportError as err:
                    errors[impl] = f'{type(err).__name__}: {err}'
                    continue
                seconds[impl].append(time.perf_counter() - start)
                log(f'repeat {r + 1}/{repeats} {impl}: {seconds[impl][-1]:.2f} s')
    env = environment('cpu')
    env['densebox_coco_backend'] = _default_backend()
    results = [dict(impl=impl, seconds=statistics.median(seconds[impl]) if seconds[impl] else None,
                    seconds_repeats=seconds[impl],
                    stats=stats[impl].tolist() if impl in stats else None, error=errors[impl])
               for impl in impls]
    identical, max_diff = {}, {}
    if 'pycocotools' in stats:
        ref = stats['pycocotools']
        for impl, s in stats.items():
            identical[impl] = bool(np.array_equal(np.round(s, 4), np.round(ref, 4)))
            max_diff[impl] = float(np.abs(s - ref).max())
    return dict(env=env, settings=dict(num_images=num_images, dets_per_image=dets_per_image,
                                       repeats=repeats, seed=seed,
                                       num_annotations=len(gt['annotations'])),
                results=results, identical_to_pycocotools=identical, max_abs_diff=max_diff)


def _default_backend() -> str:
    from densebox.evaluation.coco_metric import resolve_backend
    return resolve_backend('auto')


def format_eval_table(out: dict) -> str:
    """Text table: seconds of each side, speed-up over pycocotools, identical stats."""
    rows = {r['impl']: r for r in out['results']}
    base = rows.get('pycocotools', {}).get('seconds')
    lines = [f"{'impl':<18}{'seconds':>10}{'vs pycocotools':>16}{'AP':>8}{'identical':>11}"]
    for impl, r in rows.items():
        if r['error']:
            lines.append(f'{impl:<18}  error: {r["error"]}')
            continue
        speed = f'{base / r["seconds"]:.2f}x' if base and r['seconds'] else 'n/a'
        same = out['identical_to_pycocotools'].get(impl)
        lines.append(f"{impl:<18}{r['seconds']:>10.2f}{speed:>16}{r['stats'][0]:>8.4f}"
                     f"{str(same):>11}")
    return '\n'.join(lines)

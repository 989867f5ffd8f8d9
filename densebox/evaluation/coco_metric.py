"""COCO box AP through pycocotools (or faster-coco-eval, the same numbers faster)."""
import contextlib
import copy
import io
import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from densebox.registry import METRICS
from .functional import format_table, read_instances, sample_to_dict, to_numpy

_BACKENDS = ('auto', 'pycocotools', 'faster_coco_eval')
_STAT_KEYS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def resolve_backend(backend: str) -> str:
    """``'auto'``: faster-coco-eval when it is installed (the same numbers as pycocotools,
    computed in C++; tests/test_det_metrics.py checks them equal), else pycocotools."""
    if backend != 'auto':
        return backend
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return 'pycocotools'
    return 'faster_coco_eval'


def _coco_api(backend: str) -> Tuple[type, type]:
    """(COCO, COCOeval) classes of a backend."""
    if backend == 'pycocotools':
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    if backend == 'faster_coco_eval':
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as err:
            raise ImportError("CocoMetric(backend='faster_coco_eval') needs "
                              '`pip install faster-coco-eval`') from err
        return COCO, COCOeval_faster
    raise ValueError(f'CocoMetric: backend must be one of {_BACKENDS}, got {backend!r}')


def _quiet():
    """Swallow pycocotools' prints (the summary is logged instead)."""
    return contextlib.redirect_stdout(io.StringIO())


def _coco_from_dict(coco_cls: type, dataset: Dict[str, Any]):
    """A COCO api object from an in-memory dict (``images``, ``annotations``, ``categories``)."""
    coco = coco_cls()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO-style box AP (AP@[.5:.95], AP50, AP75, AP small / medium / large).

    Args:
        ann_file: COCO-format ground-truth json. ``None``: build the ground truth from the
            ``gt_instances`` / ``ignored_instances`` (as ``iscrowd``) and ``ori_shape`` the
            samples carry, for data sets that are not in COCO format.
        metric: only ``'bbox'``.
        classwise: log a per-class AP table.
        format_only: only write ``<outfile_prefix>.bbox.json`` (e.g. for test-dev) and return
            an empty dict.
        outfile_prefix: where to write results json; required with ``format_only``.
        backend: ``'auto'`` (faster-coco-eval when installed, else pycocotools),
            ``'pycocotools'`` or ``'faster_coco_eval'``. Both give the same numbers.
        collect_device: ``'cpu'`` or ``'gpu'``.
        prefix: key prefix in the metric dict (default ``'coco'``).

    Labels map to category ids through ``dataset_meta['cat_ids']`` when the dataset gives
    them, else through the ann_file's categories matched by name to
    ``dataset_meta['classes']`` (all categories sorted by id when there are no classes),
    else (no ann_file) ``1..C``.

    After :meth:`compute_metrics`, ``summary_stats`` holds COCOeval's 12 summary numbers
    (AP, AP50, AP75, AP s/m/l, AR@1/10/100, AR s/m/l).
    """

    default_prefix = 'coco'

    def __init__(self, ann_file: Optional[str] = None, metric: str = 'bbox',
                 classwise: bool = True, format_only: bool = False,
                 outfile_prefix: Optional[str] = None, backend: str = 'auto',
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if metrics != ['bbox']:
            raise ValueError(f"CocoMetric: only metric='bbox' is supported, got {metric!r}")
        if format_only and outfile_prefix is None:
            raise ValueError('CocoMetric: format_only=True needs outfile_prefix (the results '
                             'go to <outfile_prefix>.bbox.json)')
        if backend not in _BACKENDS:
            raise ValueError(f'CocoMetric: backend must be one of {_BACKENDS}, got {backend!r}')
        self.backend = resolve_backend(backend)
        self.coco_cls, self.eval_cls = _coco_api(self.backend)
        self.summary_stats: Optional[List[float]] = None
        self.classwise = classwise
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        self.ann_file = ann_file
        self._coco_gt = None
        if ann_file is not None:
            with get_local_path(ann_file) as local_path:
                if not osp.isfile(local_path):
                    raise FileNotFoundError(f'CocoMetric: ann_file {ann_file} does not exist')
                with _quiet():
                    self._coco_gt = self.coco_cls(local_path)

    # ---- collecting ----
    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Store per image its id, predictions and (without ann_file) its ground truth.

        Each sample has ``img_id``, ``pred_instances`` (bboxes (K, 4) xyxy original pixels,
        scores (K,), labels (K,)); without an ann_file also ``ori_shape`` (h, w),
        ``gt_instances`` and optionally ``ignored_instances`` (crowd boxes).
        """
        for sample in data_samples:
            sample = sample_to_dict(sample)
            if 'img_id' not in sample:
                raise KeyError('CocoMetric: data sample has no img_id')
            result = dict(img_id=sample['img_id'],
                          pred=read_instances(sample, 'pred_instances', required=True,
                                              with_scores=True))
            if self._coco_gt is None and not self.format_only:
                if 'ori_shape' not in sample:
                    raise KeyError(f"CocoMetric without ann_file needs 'ori_shape' in the "
                                   f"data sample (img_id={sample['img_id']!r})")
                result['ori_shape'] = tuple(int(v) for v in to_numpy(sample['ori_shape'])[:2])
                result['gt'] = read_instances(sample, 'gt_instances', required=True)
                result['ignored'] = read_instances(sample, 'ignored_instances', required=False)
            self.results.append(result)

    # ---- category ids ----
    def _class_names_and_cat_ids(self, results: List[dict]) -> Tuple[List[str], List[int]]:
        meta = self.dataset_meta or {}
        classes = meta.get('classes')
        if self._coco_gt is not None:
            cats = sorted(self._coco_gt.loadCats(self._coco_gt.getCatIds()),
                          key=lambda c: c['id'])
            if 'cat_ids' in meta:
                cat_ids = [int(c) for c in meta['cat_ids']]
                id2name = {c['id']: c['name'] for c in cats}
                names = list(classes) if classes else [id2name.get(i, str(i)) for i in cat_ids]
            elif classes:
                name2id = {c['name']: c['id'] for c in cats}
                missing = [n for n in classes if n not in name2id]
                if missing:
                    raise ValueError(f'CocoMetric: classes {missing} of dataset_meta are not '
                                     f'categories of {self.ann_file}')
                names, cat_ids = list(classes), [name2id[n] for n in classes]
            else:
                names, cat_ids = [c['name'] for c in cats], [c['id'] for c in cats]
        else:
            if classes:
                names = list(classes)
            else:
                labels = [r[k]['labels'] for r in results for k in ('pred', 'gt', 'ignored')
                          if k in r and r[k]['labels'].size]
                num = int(max((lab.max() for lab in labels), default=-1)) + 1
                names = [f'class_{i}' for i in range(num)]
            cat_ids = ([int(c) for c in meta['cat_ids']] if 'cat_ids' in meta
                       else list(range(1, len(names) + 1)))
        if len(cat_ids) != len(names):
            raise ValueError(f'CocoMetric: {len(names)} classes but {len(cat_ids)} cat_ids')
        return names, cat_ids

    @staticmethod
    def _label_to_cat(labels: np.ndarray, cat_ids: np.ndarray, img_id: Any) -> np.ndarray:
        if labels.size and (labels.min() < 0 or labels.max() >= len(cat_ids)):
            raise ValueError(f'CocoMetric: label {labels.min()}..{labels.max()} of img_id='
                             f'{img_id!r} outside 0..{len(cat_ids) - 1}')
        return cat_ids[labels]

    # ---- json ----
    @staticmethod
    def _xyxy_to_xywh(bboxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy -> (N, 4) x, y, w, h (float64 for json)."""
        b = bboxes.astype(np.float64)
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    def _detection_columns(self, results: List[dict], cat_ids: np.ndarray,
                           img_ids: Optional[List[Any]] = None) -> tuple:
        """Every detection as four parallel columns: image ids (list), boxes (N, 4) float64
        xywh, scores (N,) and category ids (N,). ``img_ids`` overrides the sample ids."""
        image_col, boxes, scores, cats = [], [], [], []
        for i, r in enumerate(results):
            pred = r['pred']
            cats.append(self._label_to_cat(pred['labels'], cat_ids, r['img_id']))
            image_col.extend([r['img_id'] if img_ids is None else img_ids[i]] * len(cats[-1]))
            boxes.append(pred['bboxes'])
            scores.append(pred['scores'])
        if not boxes:
            return [], np.zeros((0, 4)), np.zeros(0, np.float32), np.zeros(0, np.int64)
        return (image_col, self._xyxy_to_xywh(np.concatenate(boxes)), np.concatenate(scores),
                np.concatenate(cats))

    def _results_json(self, results: List[dict], cat_ids: np.ndarray,
                      img_ids: Optional[List[Any]] = None) -> List[dict]:
        """COCO results list: one dict per detection. ``img_ids`` overrides sample ids."""
        image_col, xywh, scores, cats = self._detection_columns(results, cat_ids, img_ids)
        return [dict(image_id=i, bbox=b, score=s, category_id=c)
                for i, b, s, c in zip(image_col, xywh.tolist(), scores.tolist(), cats.tolist())]

    def _detection_annotations(self, results: List[dict], cat_ids: np.ndarray,
                               img_ids: Optional[List[Any]] = None) -> List[dict]:
        """The detections as the annotations ``COCO.loadRes`` would make of the results list
        (``area`` = w * h in float64, ``id`` 1..N in the same order, ``iscrowd`` 0), built in
        one pass: loadRes' own loop over 500k detections is slower and adds box polygons
        that bbox evaluation never reads."""
        image_col, xywh, scores, cats = self._detection_columns(results, cat_ids, img_ids)
        areas = (xywh[:, 2] * xywh[:, 3]).tolist()
        return [{'image_id': i, 'bbox': b, 'score': s, 'category_id': c, 'area': a, 'id': k,
                 'iscrowd': 0}  # dict literals: twice as fast as dict(...) here
                for k, (i, b, s, c, a) in enumerate(zip(image_col, xywh.tolist(), scores.tolist(),
                                                        cats.tolist(), areas), start=1)]

    def _gt_from_samples(self, results: List[dict], names: List[str],
                         cat_ids: np.ndarray) -> Dict[str, Any]:
        """COCO ground-truth dict built from the samples; image ids become 1..N."""
        seen = set()
        images, annotations = [], []
        for index, r in enumerate(results, start=1):
            if r['img_id'] in seen:
                raise ValueError(f"CocoMetric: img_id {r['img_id']!r} evaluated twice")
            seen.add(r['img_id'])
            h, w = r['ori_shape']
            images.append(dict(id=index, height=h, width=w, file_name=str(r['img_id'])))
            for key, crowd in (('gt', 0), ('ignored', 1)):
                boxes = self._xyxy_to_xywh(r[key]['bboxes'])
                cats = self._label_to_cat(r[key]['labels'], cat_ids, r['img_id'])
                for box, cat in zip(boxes.tolist(), cats.tolist()):
                    annotations.append(dict(id=len(annotations) + 1, image_id=index,
                                            category_id=int(cat), bbox=box,
                                            area=box[2] * box[3], iscrowd=crowd))
        categories = [dict(id=int(c), name=n) for c, n in zip(cat_ids, names)]
        return dict(images=images, annotations=annotations, categories=categories)

    # ---- evaluation ----
    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Run COCOeval (bbox) and return ``bbox_mAP``, ``bbox_mAP_50``, ... in [0, 1].

        Entries are -1 where COCOeval has no ground truth to score (e.g. no small boxes).
        """
        names, cat_ids = self._class_names_and_cat_ids(results)
        cat_ids_np = np.asarray(cat_ids, dtype=np.int64)

        if self.format_only or self.outfile_prefix is not None:
            self._dump(self._results_json(results, cat_ids_np))
            if self.format_only:
                print_log(f'CocoMetric: results written to {self.outfile_prefix}.bbox.json; '
                          'not evaluated (format_only=True)', logger='current')
                return {}

        if self._coco_gt is not None:
            coco_gt = self._coco_gt
            img_ids = [r['img_id'] for r in results]
            unknown = set(img_ids) - set(coco_gt.getImgIds())
            if unknown:
                raise ValueError(f'CocoMetric: img_ids {sorted(unknown)[:5]} are not images '
                                 f'of {self.ann_file}')
            dets = self._detection_annotations(results, cat_ids_np)
            eval_img_ids = sorted(set(img_ids))
        else:
            coco_gt = _coco_from_dict(self.coco_cls,
                                      self._gt_from_samples(results, names, cat_ids_np))
            eval_img_ids = list(range(1, len(results) + 1))
            dets = self._detection_annotations(results, cat_ids_np, img_ids=eval_img_ids)

        coco_eval = self._evaluate(coco_gt, dets, eval_img_ids, cat_ids)
        stats = coco_eval.stats
        self.summary_stats = [float(v) for v in stats]
        metrics = {f'bbox_{key}': float(stats[i]) for i, key in enumerate(_STAT_KEYS)}
        if self.classwise:
            self._log_classwise(coco_eval.eval['precision'], names)
        return metrics

    def _evaluate(self, coco_gt, dets: List[dict], img_ids: List[Any], cat_ids: List[int]):
        """COCOeval on bbox with images and categories restricted to the evaluated ones.

        ``dets``: from :meth:`_detection_annotations` (what ``loadRes`` would hold)."""
        if not dets:
            print_log('CocoMetric: no predictions at all; every AP is 0', logger='current',
                      level=30)
        coco_dt = _coco_from_dict(self.coco_cls, dict(
            images=list(coco_gt.dataset['images']), annotations=dets,
            categories=copy.deepcopy(coco_gt.dataset['categories'])))
        summary = io.StringIO()
        kwargs = {}
        if self.backend == 'faster_coco_eval':
            kwargs['print_function'] = lambda *a: print(*a, file=summary)
        coco_eval = self.eval_cls(coco_gt, coco_dt, 'bbox', **kwargs)
        coco_eval.params.catIds = list(cat_ids)
        coco_eval.params.imgIds = list(img_ids)
        with _quiet():
            coco_eval.evaluate()
            coco_eval.accumulate()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()
        lines = [ln for ln in summary.getvalue().splitlines() if 'Average' in ln]
        print_log('\n' + '\n'.join(lines), logger='current')
        return coco_eval

    @staticmethod
    def classwise_ap(precision: np.ndarray) -> np.ndarray:
        """Per-class AP@[.5:.95], AP50, AP75 from COCOeval's ``eval['precision']``.

        Args:
            precision: (T, R, K, A, M) with T = 10 IoU thresholds 0.5:0.05:0.95; area range
                'all' (A index 0) and the largest maxDets (M index -1) are used.

        Returns:
            (K, 3) array; ``nan`` for a class without ground truth.
        """
        prec = np.asarray(precision)[:, :, :, 0, -1]  # (T, R, K)
        valid = prec > -1
        sums = np.where(valid, prec, 0.0).sum(axis=1)  # (T, K)
        counts = valid.sum(axis=1)
        with np.errstate(invalid='ignore', divide='ignore'):
            per_thr = np.where(counts > 0, sums / counts, np.nan)  # (T, K)
            total = counts.sum(axis=0)
            ap = np.where(total > 0, sums.sum(axis=0) / total, np.nan)  # (K,)
        return np.stack([ap, per_thr[0], per_thr[5]], axis=1)

    def _log_classwise(self, precision: np.ndarray, names: List[str]) -> None:
        table = self.classwise_ap(precision)
        rows = [[name] + [float(v) for v in table[k]] for k, name in enumerate(names)]
        print_log('\nper-class bbox AP:\n' + format_table(['class', 'AP', 'AP50', 'AP75'], rows),
                  logger='current')

    def _dump(self, dets: List[dict]) -> str:
        path = f'{self.outfile_prefix}.bbox.json'
        parent = osp.dirname(osp.abspath(path))
        os.makedirs(parent, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(dets, f)
        return path

"""Predictions of a test run in the formats other tools read (``tools/test.py --out``).

- :class:`DumpCocoResults`: detections as a COCO results file, the list that
  ``pycocotools.coco.COCO.loadRes`` and the COCO evaluation server take:
  ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` with ``bbox`` the
  top-left corner, width and height in original-image pixels.
- :class:`DumpSegMasks`: each predicted label map as a PNG (one uint8 class index per pixel,
  the layout of VOC / Cityscapes train-id / ADE20K annotation files).

Both only write files; they return no metric, so they sit next to the data set's own metric
in ``test_evaluator``. The JSON dump with everything a sample holds
(:class:`densebox.evaluation.DumpPredictions`) stays available as
``--out-format densebox``.
"""
import json
import os
import os.path as osp
from typing import List, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from densebox.registry import METRICS
from .functional import read_instances, sample_to_dict, to_numpy

__all__ = ['DumpCocoResults', 'DumpSegMasks', 'coco_results']


def _json_id(value):
    """COCO ids are ints; keep other ids (VOC's '000005') as they are."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.isdigit() and not value.startswith('0'):
        return int(value)
    return value


def coco_results(img_id, bboxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                 cat_ids: Sequence[int]) -> List[dict]:
    """COCO result entries of one image.

    Args:
        img_id: the image's id.
        bboxes: (K, 4) xyxy original-image pixels.
        scores: (K,).
        labels: (K,) 0-based class indices, mapped through ``cat_ids``.
        cat_ids: C category ids.
    """
    cat_ids = np.asarray(cat_ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= len(cat_ids)):
        raise ValueError(f'DumpCocoResults: label {labels.min()}..{labels.max()} of image '
                         f'{img_id!r} outside the {len(cat_ids)} classes')
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    image_id = _json_id(img_id)
    return [dict(image_id=image_id, category_id=int(c), bbox=[round(v, 3) for v in box],
                 score=round(float(s), 5))
            for box, s, c in zip(xywh.tolist(), np.asarray(scores).tolist(),
                                 cat_ids[labels].tolist())]


def _atomic_write_json(path: str, payload) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(payload, f)
    os.replace(tmp, path)


@METRICS.register_module()
class DumpCocoResults(BaseMetric):
    """Write the detections of the test set as a COCO results JSON file.

    Category ids: ``dataset_meta['cat_ids']`` (COCO-format data sets set it from their
    annotation file), else ``1..C`` in class order (VOC and other data sets; the classes are
    also written to ``<out_file minus .json>.categories.json`` so the ids can be read back).

    Args:
        out_file: path ending in ``.json``.
    """

    def __init__(self, out_file: str, collect_device: str = 'cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not str(out_file).endswith('.json'):
            raise ValueError(f'--out {out_file}: COCO results are JSON; give a path ending in '
                             '.json')
        self.out_file = str(out_file)

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            sample = sample_to_dict(sample)
            pred = read_instances(sample, 'pred_instances', required=True, with_scores=True)
            img_id = sample.get('img_id')
            if img_id is None:
                raise KeyError(f"DumpCocoResults: sample {sample.get('img_path')} has no img_id")
            if hasattr(img_id, 'item'):
                img_id = img_id.item()
            self.results.append((img_id, pred))

    def compute_metrics(self, results: list) -> dict:
        meta = self.dataset_meta or {}
        classes = list(meta.get('classes') or ())
        if meta.get('cat_ids') is not None:
            cat_ids = [int(c) for c in meta['cat_ids']]
        else:
            if not classes:
                num = 1 + max((int(p['labels'].max()) for _, p in results if p['labels'].size),
                              default=-1)
                classes = [f'class_{i}' for i in range(num)]
            cat_ids = list(range(1, len(classes) + 1))
            _atomic_write_json(self.out_file[:-len('.json')] + '.categories.json',
                               [dict(id=i, name=n) for i, n in zip(cat_ids, classes)])
        entries = []
        for img_id, pred in results:
            entries += coco_results(img_id, pred['bboxes'], pred['scores'], pred['labels'],
                                    cat_ids)
        _atomic_write_json(self.out_file, entries)
        print_log(f'{len(entries)} detections of {len(results)} images written to '
                  f'{self.out_file} (COCO results format)', logger='current')
        return {}


@METRICS.register_module()
class DumpSegMasks(BaseMetric):
    """Write each predicted label map to ``out_dir/<image file stem>.png``.

    A uint8 PNG of class indices (train ids), at the original image size. Images whose
    stems repeat (the same name in two folders) are named ``<folder>__<stem>.png``.

    Args:
        out_dir: the folder (created).
    """

    def __init__(self, out_dir: str, collect_device: str = 'cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if str(out_dir).endswith('.json'):
            raise ValueError(f'--out {out_dir}: segmentation predictions are written as PNG '
                             'label maps into a folder; give a folder (or --out-format densebox '
                             'for a JSON dump)')
        self.out_dir = str(out_dir)
        self._names = set()

    def _name(self, img_path: str) -> str:
        stem = osp.splitext(osp.basename(img_path))[0]
        name = stem
        if name in self._names:
            name = f'{osp.basename(osp.dirname(img_path))}__{stem}'
        k = 1
        while name in self._names:
            name, k = f'{stem}__{k}', k + 1
        self._names.add(name)
        return name + '.png'

    def process(self, data_batch, data_samples: Sequence) -> None:
        from PIL import Image
        os.makedirs(self.out_dir, exist_ok=True)
        for sample in data_samples:
            sample = sample_to_dict(sample)
            seg = to_numpy(sample['pred_sem_seg']['data'])
            seg = seg.reshape(seg.shape[-2:])  # (1, H, W) -> (H, W)
            if seg.size and (seg.min() < 0 or seg.max() > 255):
                raise ValueError(f"DumpSegMasks: class index {seg.min()}..{seg.max()} of "
                                 f"{sample.get('img_path')} does not fit a uint8 PNG")
            name = self._name(str(sample.get('img_path') or f"{sample.get('img_id')}.png"))
            path = osp.join(self.out_dir, name)
            Image.fromarray(seg.astype(np.uint8)).save(path)
            self.results.append(name)

    def compute_metrics(self, results: list) -> dict:
        print_log(f'{len(results)} label maps written to {self.out_dir} (PNG, class index per '
                  'pixel)', logger='current')
        return {}

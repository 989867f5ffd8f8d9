"""COCO-format detection data set (instances json read through pycocotools)."""
import contextlib
import io
import json
import math
import os.path as osp
from typing import Dict, List, Optional

from pycocotools.coco import COCO

from ..registry import DATASETS
from .annotation_report import AnnotationReport
from .base_det import BaseDetDataset, require_path

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush')


@DATASETS.register_module()
class CocoDetDataset(BaseDetDataset):
    """Detection data set on a COCO ``instances_*.json`` file.

    Args:
        ann_file: instances json, relative to ``data_root`` unless absolute.
        data_root: root folder, e.g. ``'data/coco/'``.
        data_prefix: ``dict(img='train2017/')``: image folder relative to ``data_root``.
        metainfo: ``dict(classes=(...))`` selects and orders the classes: label ``i`` is
            ``classes[i]``; categories of the file not listed are dropped. Default: the 80
            COCO classes (which are the file's categories sorted by id for real COCO).
        filter_cfg: ``dict(filter_empty_gt=True, min_size=32)`` for training (see
            :class:`BaseDetDataset`).
        skip_unknown_categories: when False (default) an annotation whose ``category_id`` is
            not among the file's categories is an error naming the annotation and the image;
            when True it is dropped (and counted).
        **kwargs: the rest of mmengine ``BaseDataset``'s arguments (pipeline, test_mode, ...).

    Parsing rules: ``iscrowd`` (or ``ignore``) boxes get ``ignore_flag=1``; boxes with zero
    or negative width or height, width or height below 1 px or an ``area`` <= 0 are dropped
    (as mmdet drops them); boxes reaching outside the image are clipped to it, and dropped
    when nothing (or under 1 px) is left inside; annotations of categories left out of
    ``metainfo['classes']`` are dropped. Each of these is counted and logged once, with
    examples (``annotation_report`` keeps the counts). Images without boxes stay in the list
    unless ``filter_cfg`` drops them. ``img_id`` is the COCO image id. A box is in the pixels
    of the image as the json's ``width`` / ``height`` describe it (see ``LoadImageFromFile``
    for EXIF-rotated files).

    Attributes set by loading: ``coco`` (the pycocotools ``COCO`` object), ``cat_ids``
    (list: label -> COCO category id), ``cat2label`` (dict: category id -> label),
    ``annotation_report`` (:class:`~densebox.datasets.annotation_report.AnnotationReport`
    of the clipped and dropped annotations). The
    metainfo also gets ``'cat_ids'`` so that a metric can write results in COCO ids.
    """

    METAINFO = dict(classes=COCO_CLASSES, palette=None)

    def __init__(self, ann_file: str, data_root: str = '', data_prefix: dict = dict(img=''),
                 skip_unknown_categories: bool = False, **kwargs):
        self.skip_unknown_categories = skip_unknown_categories
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix, **kwargs)

    def _img_prefix(self) -> str:
        return self.data_prefix.get('img', self.data_prefix.get('img_path', '')) or ''

    def _load_coco(self) -> COCO:
        require_path(self.ann_file, 'COCO annotation file')
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return COCO(self.ann_file)
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as err:
            raise ValueError(
                f'{self.ann_file}: not a valid COCO instances file ({type(err).__name__}: '
                f'{err})') from err

    def _map_classes(self, coco: COCO) -> Dict[int, int]:
        name_to_id: Dict[str, int] = {}
        for cat in sorted(coco.dataset.get('categories', []), key=lambda c: c['id']):
            if cat['name'] in name_to_id:
                raise ValueError(f'{self.ann_file}: category name {cat["name"]!r} is used by ids '
                                 f'{name_to_id[cat["name"]]} and {cat["id"]}')
            name_to_id[cat['name']] = cat['id']
        classes = self.metainfo['classes']
        missing = [name for name in classes if name not in name_to_id]
        if missing:
            raise ValueError(
                f'{self.ann_file}: classes {missing} of metainfo["classes"] are not categories of '
                f'this file (its categories: {list(name_to_id)}). Pass '
                'metainfo=dict(classes=(...)) with names from the file.')
        self.cat_ids = [name_to_id[name] for name in classes]
        self.cat2label = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        return self.cat2label

    def load_data_list(self) -> List[dict]:
        """Parse the json into the densebox data list (see ``base_det``)."""
        coco = self._load_coco()
        self.coco = coco
        cat2label = self._map_classes(coco)
        self._metainfo['cat_ids'] = list(self.cat_ids)
        prefix = self._img_prefix()
        report = AnnotationReport(f'{type(self).__name__}({self.ann_file})')
        data_list = []
        for img_id, img_info in coco.imgs.items():
            try:
                width, height = int(img_info['width']), int(img_info['height'])
                file_name = img_info['file_name']
            except KeyError as err:
                raise ValueError(
                    f'{self.ann_file}: image entry {img_id} lacks the field {err}') from err
            instances = []
            for ann in coco.imgToAnns.get(img_id, []):
                label = self._label_of(ann, cat2label, coco, file_name, report)
                if label is None:
                    continue
                instance = self._parse_box(ann, width, height, file_name, report)
                if instance is not None:
                    instance['bbox_label'] = label
                    instances.append(instance)
            data_list.append(dict(img_path=osp.join(prefix, file_name), img_id=img_id,
                                  height=height, width=width, instances=instances))
        self.annotation_report = report
        report.log()
        return data_list

    def _label_of(self, ann: dict, cat2label: Dict[int, int], coco: COCO, file_name: str,
                  report: AnnotationReport) -> Optional[int]:
        """The 0-based label of an annotation, or None when it is dropped (and counted)."""
        cat_id = ann.get('category_id')
        if cat_id in cat2label:
            return cat2label[cat_id]
        if cat_id in coco.cats:
            report.add('annotations of categories not in metainfo["classes"] dropped',
                       file_name, ann.get('id'), f'category {coco.cats[cat_id].get("name")!r}')
            return None
        if not self.skip_unknown_categories:
            raise ValueError(
                f'{self.ann_file}: annotation id {ann.get("id")} (image {file_name!r}) has '
                f'category_id {cat_id!r}, which is not among the file\'s categories '
                f'{sorted(coco.cats)}. Fix the file, or pass skip_unknown_categories=True to '
                'drop such annotations (they are counted in the log).')
        report.add('annotations with an unknown category_id dropped', file_name, ann.get('id'),
                   f'category_id {cat_id!r}')
        return None

    def _parse_box(self, ann: dict, width: int, height: int, file_name: str,
                   report: AnnotationReport) -> Optional[dict]:
        """One annotation -> instance dict (box clipped to the image), or None when the box
        is dropped; every clip and drop is counted in ``report``."""
        bbox = ann.get('bbox')
        ann_id = ann.get('id')
        if bbox is None or len(bbox) != 4:
            raise ValueError(f'{self.ann_file}: annotation id {ann_id} has bbox {bbox!r}; '
                             'expected [x, y, w, h]')
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError) as err:
            raise ValueError(f'{self.ann_file}: annotation id {ann_id} has a non-numeric bbox '
                             f'{bbox!r}') from err
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise ValueError(f'{self.ann_file}: annotation id {ann_id} has a non-finite bbox '
                             f'{bbox!r}')
        detail = f'bbox {bbox}'
        if w <= 0 or h <= 0:
            report.add('zero-area or negative boxes dropped', file_name, ann_id, detail)
            return None
        if w < 1 or h < 1:
            report.add('boxes under 1 pixel wide or high dropped', file_name, ann_id, detail)
            return None
        if ann.get('area', 1) <= 0:
            report.add('boxes whose "area" is <= 0 dropped', file_name, ann_id,
                       f'area {ann.get("area")}')
            return None
        box = [x, y, x + w, y + h]
        clipped = [min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
                   min(max(box[2], 0.0), width), min(max(box[3], 0.0), height)]
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            report.add('boxes outside the image dropped', file_name, ann_id,
                       f'{detail}, image {width}x{height}')
            return None
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            report.add('boxes with under 1 pixel inside the image dropped', file_name, ann_id,
                       f'{detail}, image {width}x{height}')
            return None
        if clipped != box:
            report.add('boxes clipped to the image', file_name, ann_id,
                       f'{detail}, image {width}x{height}')
        ignore = bool(ann.get('iscrowd', 0)) or bool(ann.get('ignore', 0))
        return dict(bbox=clipped, ignore_flag=int(ignore))

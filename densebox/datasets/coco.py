"""COCO-format detection data set (instances json read through pycocotools)."""
import contextlib
import io
import json
import os.path as osp
from typing import Dict, List

from pycocotools.coco import COCO

from ..registry import DATASETS
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
        **kwargs: the rest of mmengine ``BaseDataset``'s arguments (pipeline, test_mode, ...).

    Parsing rules (those of mmdet): ``iscrowd`` (or ``ignore``) boxes get ``ignore_flag=1``;
    boxes with width or height below 1 px, non-positive area or no overlap with the image are
    skipped; images without boxes stay in the list unless ``filter_cfg`` drops them.
    ``img_id`` is the COCO image id.

    Attributes set by loading: ``coco`` (the pycocotools ``COCO`` object), ``cat_ids``
    (list: label -> COCO category id), ``cat2label`` (dict: category id -> label). The
    metainfo also gets ``'cat_ids'`` so that a metric can write results in COCO ids.
    """

    METAINFO = dict(classes=COCO_CLASSES, palette=None)

    def __init__(self, ann_file: str, data_root: str = '', data_prefix: dict = dict(img=''),
                 **kwargs):
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
                label = cat2label.get(ann.get('category_id'))
                if label is None:
                    continue
                instance = self._parse_box(ann, width, height)
                if instance is not None:
                    instance['bbox_label'] = label
                    instances.append(instance)
            data_list.append(dict(img_path=osp.join(prefix, file_name), img_id=img_id,
                                  height=height, width=width, instances=instances))
        return data_list

    def _parse_box(self, ann: dict, width: int, height: int):
        """One annotation -> instance dict, or None when mmdet's rules skip the box."""
        bbox = ann.get('bbox')
        if bbox is None or len(bbox) != 4:
            raise ValueError(f'{self.ann_file}: annotation id {ann.get("id")} has bbox {bbox!r}; '
                             'expected [x, y, w, h]')
        x, y, w, h = (float(v) for v in bbox)
        overlap_w = max(0.0, min(x + w, width) - max(x, 0.0))
        overlap_h = max(0.0, min(y + h, height) - max(y, 0.0))
        if overlap_w * overlap_h <= 0 or w < 1 or h < 1 or ann.get('area', 1) <= 0:
            return None
        ignore = bool(ann.get('iscrowd', 0)) or bool(ann.get('ignore', 0))
        return dict(bbox=[x, y, x + w, y + h], ignore_flag=int(ignore))

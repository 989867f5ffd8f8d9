"""PASCAL VOC detection data set (ImageSets id list + one Annotations xml per image).

Box convention (the one place it is written; the data set and ``VOCMetric`` both use these
two functions). A VOC ``<bndbox>`` holds 1-based, inclusive pixel indices: ``xmin = 1,
xmax = 3`` is a box three pixels wide, the first three columns. densebox's boxes are
continuous pixel edges (pixel ``k``, 0-based, spans ``[k, k + 1)``), so the same box is
``x1 = 0, x2 = 3``:

    densebox xyxy = [xmin - 1, ymin - 1, xmax, ymax]       (voc_box_to_xyxy)
    VOC inclusive = [x1 + 1, y1 + 1, x2, y2]               (xyxy_to_voc_box)

Training, the transforms and the model use the continuous boxes (a flip is ``W - x``, a
resize a product). ``VOCMetric`` turns ground truth and detections back into VOC's
inclusive pixels and then does the devkit's arithmetic (width ``xmax - xmin + 1``), so its
APs are the devkit's on the xml's own numbers.
"""
import os.path as osp
import xml.etree.ElementTree as ET
from typing import List

import numpy as np

from ..registry import DATASETS
from .annotation_report import AnnotationReport
from .base_det import BaseDetDataset, require_path
from .transforms.image_decode import image_file_size

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')


def voc_box_to_xyxy(xmin: float, ymin: float, xmax: float, ymax: float) -> List[float]:
    """A VOC ``<bndbox>`` (1-based inclusive pixel indices) -> densebox xyxy (pixel edges)."""
    return [xmin - 1.0, ymin - 1.0, float(xmax), float(ymax)]


def xyxy_to_voc_box(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) densebox xyxy boxes -> (N, 4) float64 VOC inclusive pixel boxes (the inverse of
    :func:`voc_box_to_xyxy`; what a VOC results file holds)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes + np.array([1.0, 1.0, 0.0, 0.0])


@DATASETS.register_module()
class VOCDataset(BaseDetDataset):
    """PASCAL VOC detection (VOC2007 / VOC2012 or any folder in the VOC layout).

    Layout under ``data_root`` (e.g. ``'data/VOCdevkit/'``)::

        <sub_data_root>/ImageSets/Main/<split>.txt   one image id per line
        <sub_data_root>/Annotations/<id>.xml
        <sub_data_root>/JPEGImages/<id>.jpg

    Args:
        data_root: folder holding the VOC year folders.
        ann_file: the id list, relative to ``data_root``.
        data_prefix: ``dict(sub_data_root='VOC2007/')``: the year folder, relative to
            ``data_root`` (empty: ``data_root`` itself).
        img_subdir / ann_subdir / img_suffix: names inside the year folder.
        skip_unknown_classes: when False (default) an object whose name is not in
            ``metainfo['classes']`` is an error naming the xml file; when True it is
            dropped and counted (use this to train on a subset of the classes).
        use_difficult: when False (default) ``difficult`` objects get ``ignore_flag=1``
            (they become ``ignored_instances``: the metric neither rewards nor punishes
            detections on them, and SSD's training leaves them out, as mmdetection does);
            when True they are ordinary ground truth, as Caffe SSD trains
            (``train_on_diff_gt = True``). Evaluation data sets keep the default.
        **kwargs: the rest of mmengine ``BaseDataset``'s arguments.

    Boxes: see the module docstring (``[xmin - 1, ymin - 1, xmax, ymax]``). Boxes reaching
    outside the ``<size>`` are clipped to it, boxes with ``xmax < xmin`` or ``ymax < ymin``
    and boxes entirely outside the image are dropped; each is counted and logged once with
    examples (``annotation_report``). ``img_id`` is the id string ('000005').
    metainfo carries ``'dataset_type': 'VOC'`` for both years, so VOC2007 and VOC2012
    concatenate without ``ignore_keys``.
    """

    # palette None: the VOC segmentation colours of these classes (known_palette)
    METAINFO = dict(classes=VOC_CLASSES, palette=None, dataset_type='VOC')

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = 'VOC2007/ImageSets/Main/trainval.txt',
                 data_prefix: dict = dict(sub_data_root='VOC2007/'),
                 img_subdir: str = 'JPEGImages',
                 ann_subdir: str = 'Annotations',
                 img_suffix: str = '.jpg',
                 skip_unknown_classes: bool = False,
                 use_difficult: bool = False,
                 **kwargs):
        self.img_subdir = img_subdir
        self.ann_subdir = ann_subdir
        self.img_suffix = img_suffix
        self.skip_unknown_classes = skip_unknown_classes
        self.use_difficult = use_difficult
        super().__init__(data_root=data_root, ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    @property
    def sub_data_root(self) -> str:
        return self.data_prefix.get('sub_data_root') or self.data_root or '.'

    def load_data_list(self) -> List[dict]:
        """Read the id list and parse every xml (see the class docstring)."""
        require_path(self.ann_file, 'VOC image-set file (ann_file)')
        require_path(self.sub_data_root,
                     'VOC year folder (data_root + data_prefix["sub_data_root"])')
        with open(self.ann_file) as f:
            img_ids = [line.split()[0] for line in f if line.strip()]
        cls2label = {name: i for i, name in enumerate(self.metainfo['classes'])}
        report = AnnotationReport(f'{type(self).__name__}({self.ann_file})')
        data_list = [self._parse_one(img_id, cls2label, report) for img_id in img_ids]
        self.annotation_report = report
        report.log()
        return data_list

    def _parse_one(self, img_id: str, cls2label: dict, report: AnnotationReport) -> dict:
        root = self.sub_data_root
        img_path = osp.join(root, self.img_subdir, img_id + self.img_suffix)
        xml_path = osp.join(root, self.ann_subdir, img_id + '.xml')
        require_path(xml_path, f'VOC annotation of image {img_id!r} listed in {self.ann_file}')
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as err:
            raise ValueError(f'{xml_path}: not valid XML ({err})') from err

        width = _int_or_none(tree.findtext('size/width'))
        height = _int_or_none(tree.findtext('size/height'))
        if not width or not height:
            require_path(img_path, f'image of {xml_path} (its <size> is missing)')
            height, width = image_file_size(img_path)

        instances = []
        for k, obj in enumerate(tree.findall('object')):
            name = (obj.findtext('name') or '').strip()
            if name not in cls2label:
                if self.skip_unknown_classes:
                    report.add('objects of classes not in metainfo["classes"] dropped',
                               xml_path, f'<object> #{k}', f'class {name!r}')
                    continue
                raise ValueError(f'{xml_path}: <object> #{k} has class name {name!r}, which is not '
                                 f'in metainfo["classes"] {self.metainfo["classes"]}')
            try:
                xml_box = [float(obj.findtext(f'bndbox/{key}'))
                           for key in ('xmin', 'ymin', 'xmax', 'ymax')]
            except (TypeError, ValueError) as err:
                raise ValueError(f'{xml_path}: <object> #{k} ({name}) has a missing or '
                                 f'non-numeric <bndbox> coordinate ({err})') from err
            box = self._checked_box(xml_box, width, height, xml_path, k, report)
            if box is None:
                continue
            difficult = bool(_int_or_none(obj.findtext('difficult')) or 0)
            instances.append(dict(bbox=box, bbox_label=cls2label[name],
                                  ignore_flag=int(difficult and not self.use_difficult)))
        return dict(img_path=img_path, img_id=img_id, xml_path=xml_path, height=height,
                    width=width, instances=instances)

    @staticmethod
    def _checked_box(xml_box: List[float], width: int, height: int, xml_path: str, k: int,
                     report: AnnotationReport):
        """The xyxy box of a ``<bndbox>``, clipped to the image, or None when dropped."""
        where = f'<object> #{k}'
        detail = 'bndbox ' + ' '.join(f'{v:g}' for v in xml_box)
        if not all(np.isfinite(xml_box)):
            raise ValueError(f'{xml_path}: {where} has a non-finite <bndbox> ({detail})')
        box = voc_box_to_xyxy(*xml_box)
        if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
            report.add('zero-area or negative boxes (xmax < xmin or ymax < ymin) dropped',
                       xml_path, where, detail)
            return None
        clipped = [min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
                   min(max(box[2], 0.0), width), min(max(box[3], 0.0), height)]
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            report.add('boxes outside the image dropped', xml_path, where,
                       f'{detail}, size {width}x{height}')
            return None
        if clipped != box:
            report.add('boxes clipped to the image', xml_path, where,
                       f'{detail}, size {width}x{height}')
        return clipped


def _int_or_none(text):
    if text is None or not text.strip():
        return None
    return int(float(text))

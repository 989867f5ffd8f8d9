"""PASCAL VOC detection data set (ImageSets id list + one Annotations xml per image)."""
import os.path as osp
import xml.etree.ElementTree as ET
from typing import List

from PIL import Image

from ..registry import DATASETS
from .base_det import BaseDetDataset, require_path

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')


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
            dropped (use this to train on a subset of the classes).
        **kwargs: the rest of mmengine ``BaseDataset``'s arguments.

    Boxes: VOC pixel indices are 1-based and inclusive, so ``xmin`` and ``ymin`` lose 1 and
    ``[xmin - 1, ymin - 1, xmax, ymax]`` is the box in continuous 0-based pixels.
    ``difficult`` objects get ``ignore_flag=1``. ``img_id`` is the id string ('000005').
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
                 **kwargs):
        self.img_subdir = img_subdir
        self.ann_subdir = ann_subdir
        self.img_suffix = img_suffix
        self.skip_unknown_classes = skip_unknown_classes
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
        return [self._parse_one(img_id, cls2label) for img_id in img_ids]

    def _parse_one(self, img_id: str, cls2label: dict) -> dict:
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
            with Image.open(img_path) as img:
                width, height = img.size

        instances = []
        for k, obj in enumerate(tree.findall('object')):
            name = (obj.findtext('name') or '').strip()
            if name not in cls2label:
                if self.skip_unknown_classes:
                    continue
                raise ValueError(f'{xml_path}: <object> #{k} has class name {name!r}, which is not '
                                 f'in metainfo["classes"] {self.metainfo["classes"]}')
            try:
                xmin, ymin, xmax, ymax = (float(obj.findtext(f'bndbox/{key}'))
                                          for key in ('xmin', 'ymin', 'xmax', 'ymax'))
            except (TypeError, ValueError) as err:
                raise ValueError(f'{xml_path}: <object> #{k} ({name}) has a missing or '
                                 f'non-numeric <bndbox> coordinate ({err})') from err
            box = [xmin - 1, ymin - 1, xmax, ymax]
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            difficult = _int_or_none(obj.findtext('difficult')) or 0
            instances.append(dict(bbox=box, bbox_label=cls2label[name],
                                  ignore_flag=int(difficult != 0)))
        return dict(img_path=img_path, img_id=img_id, xml_path=xml_path, height=height,
                    width=width, instances=instances)


def _int_or_none(text):
    if text is None or not text.strip():
        return None
    return int(float(text))

"""PASCAL VOC 2012 semantic segmentation (21 classes, background included).

Layout (``VOCtrainval_11-May-2012.tar`` unpacked)::

    data/VOCdevkit/VOC2012/
      JPEGImages/<name>.jpg
      SegmentationClass/<name>.png             palette png: pixel = class index, 255 = border
      ImageSets/Segmentation/{train,val,trainval}.txt
      # optional "aug" training set (SBD, Hariharan et al. 2011), see data/README.md:
      SegmentationClassAug/<name>.png          plain uint8 class-index pngs, 12031 images
      ImageSets/Segmentation/train_aug.txt     10582 names: VOC train + SBD, minus VOC val

The aug set is the same class with ``data_prefix=dict(img_path='JPEGImages',
seg_map_path='SegmentationClassAug')`` and ``ann_file='ImageSets/Segmentation/train_aug.txt'``.
"""
from typing import List, Tuple

from densebox.registry import DATASETS

from .base_seg import BaseSegDataset


def voc_colormap(num: int) -> List[Tuple[int, int, int]]:
    """The PASCAL VOC colour map: the bits of the index spread over r, g, b (high bit first).

    Args:
        num: number of colours (indices 0..num-1).
    Returns:
        list of ``num`` RGB tuples; index 0 is black, 1 is (128, 0, 0), 2 is (0, 128, 0), ...
    """
    colours = []
    for index in range(num):
        rgb = [0, 0, 0]
        code = index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        colours.append(tuple(rgb))
    return colours


VOC_SEG_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
                   'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
                   'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


@DATASETS.register_module()
class VOCSegDataset(BaseSegDataset):
    """PASCAL VOC 2012 segmentation: ``JPEGImages`` + ``SegmentationClass`` (or ``...Aug``).

    ``ann_file`` is required (the split list, e.g. ``ImageSets/Segmentation/train.txt``):
    ``JPEGImages`` also holds the detection-only images, which have no mask.
    """

    METAINFO = dict(classes=VOC_SEG_CLASSES, palette=voc_colormap(len(VOC_SEG_CLASSES)))

    def __init__(self, ann_file: str = '', img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png', **kwargs):
        if not ann_file:
            raise ValueError('VOCSegDataset needs ann_file, e.g. '
                             "'ImageSets/Segmentation/train.txt': JPEGImages also holds "
                             'images that have no segmentation mask')
        super().__init__(ann_file=ann_file, img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, **kwargs)

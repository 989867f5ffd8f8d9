"""Cityscapes with 27 classes: every label id from 7 (road) to 33 (bicycle), as unsupervised /
zero-shot segmentation reports it (IIC, STEGO, ReCo), instead of the 19 train ids.

Masks are the official ``*_gtFine_labelIds.png`` (in the download, no conversion needed):
label id ``i`` in 7..33 becomes class ``i - 7``; ids 0..6 (unlabelled, ego vehicle,
rectification border, out of roi, static, dynamic, ground) and the license plate are ignored.
"""
from densebox.registry import DATASETS

from .base_seg import BaseSegDataset

# The 27 label ids 7..33 in order; ReCo prompts "parking" as "parking lot".
CITYSCAPES27_CLASSES = (
    'road', 'sidewalk', 'parking', 'rail track', 'building', 'wall', 'fence', 'guard rail',
    'bridge', 'tunnel', 'pole', 'polegroup', 'traffic light', 'traffic sign', 'vegetation',
    'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'caravan', 'trailer', 'train',
    'motorcycle', 'bicycle')
CITYSCAPES27_PALETTE = [
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32)]
FIRST_LABEL_ID = 7


@DATASETS.register_module()
class Cityscapes27Dataset(BaseSegDataset):
    """Cityscapes fine, ``leftImg8bit/<split>`` images with their ``gtFine/<split>`` label-id
    masks reduced to 27 classes (see the module docstring)."""

    METAINFO = dict(classes=CITYSCAPES27_CLASSES, palette=CITYSCAPES27_PALETTE)

    def __init__(self, img_suffix: str = '_leftImg8bit.png',
                 seg_map_suffix: str = '_gtFine_labelIds.png', **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    @classmethod
    def get_label_map(cls, metainfo):
        subset = super().get_label_map(metainfo)  # a subset of the 27, or None
        mapping = {}
        for label_id in range(256):
            k = label_id - FIRST_LABEL_ID
            k = k if 0 <= k < len(CITYSCAPES27_CLASSES) else 255
            mapping[label_id] = subset[k] if subset is not None and k != 255 else k
        return mapping

    def _subset_palette(self, metainfo):
        """The colours of the kept classes (the label map here also holds the id reduction)."""
        palette = list(self.METAINFO.get('palette') or [])
        if not palette or (metainfo and 'palette' in metainfo):
            return list(self._metainfo.get('palette') or [])
        names = list(self.METAINFO['classes'])
        return [tuple(palette[names.index(c)]) for c in self._metainfo['classes']]

"""Cityscapes (fine annotations), 19 evaluation classes indexed by their train ids.

Layout (what the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
unpack to, plus the train-id masks made by cityscapesscripts)::

    data/cityscapes/
      leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
                                     <city>_<seq>_<frame>_gtFine_labelIds.png  (CityscapesMetric)
                                     <city>_<seq>_<frame>_gtFine_polygons.json (the source)

The ``*_labelTrainIds.png`` files are not in the download: make them with
``python tools/dataset_converters/cityscapes.py data/cityscapes`` (see data/README.md).
"""
import os.path as osp

from densebox.registry import DATASETS

from .base_seg import BaseSegDataset

CITYSCAPES_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
                      'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky', 'person',
                      'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')
CITYSCAPES_PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
                      (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
                      (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
                      (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100),
                      (0, 0, 230), (119, 11, 32)]

CONVERT_HINT = ('The *_gtFine_labelTrainIds.png masks are made from the *_gtFine_polygons.json '
                'files of the download. Run\n'
                '    python tools/dataset_converters/cityscapes.py {root}\n'
                'or cityscapesscripts\' own script:\n'
                '    CITYSCAPES_DATASET={root} python -m '
                'cityscapesscripts.preparation.createTrainIdLabelImgs\n'
                'See data/README.md.')


@DATASETS.register_module()
class CityscapesDataset(BaseSegDataset):
    """Cityscapes fine: ``leftImg8bit/<split>`` images with ``gtFine/<split>`` train-id masks.

    Mask values are train ids 0..18 and 255 (void), so no label reduction is needed.
    """

    METAINFO = dict(classes=CITYSCAPES_CLASSES, palette=CITYSCAPES_PALETTE)

    def __init__(self,
                 img_suffix: str = '_leftImg8bit.png',
                 seg_map_suffix: str = '_gtFine_labelTrainIds.png',
                 **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    def missing_seg_map_error(self, img_path: str, seg_map_path: str) -> Exception:
        """Point to the converter when the polygons are there but the train-id masks not."""
        suffix = self.seg_map_suffix
        polygons = (seg_map_path[:-len(suffix)] + '_gtFine_polygons.json'
                    if seg_map_path.endswith(suffix) else None)
        if polygons and osp.isfile(polygons):
            root = osp.abspath(self.data_root) if self.data_root else '<cityscapes root>'
            return FileNotFoundError(
                f'CityscapesDataset: image {img_path!r} has no train-id mask {seg_map_path!r}, '
                f'but its polygons {polygons!r} exist. ' + CONVERT_HINT.format(root=root))
        return super().missing_seg_map_error(img_path, seg_map_path)

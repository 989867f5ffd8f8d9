"""COCO-Stuff (164k images, 171 classes) and its 27 coarse classes (things: 12, stuff: 15),
the setting of IIC / STEGO / ReCo ("COCO-Stuff-27").

Layout (the official ``val2017.zip`` images and ``stuffthingmaps_trainval2017.zip`` label
maps, whose pixels hold the 0-based COCO-Stuff ids 0..181, 255 = unlabelled)::

    data/coco_stuff164k/
      images/{train2017,val2017}/<id>.jpg
      annotations/{train2017,val2017}/<id>.png
      curated/{train2017,val2017}/Coco164kFull_Stuff_Coarse.txt   (optional: IIC's image lists)

The data here are the published class lists: :data:`COCO_STUFF_CLASSES` (171 names, in id
order, the 11 ids COCO dropped left out; ReCo prompts with these names),
:data:`COCO_STUFF_IDS` (their 0-based ids), :data:`COCO_STUFF_182_TO_27` (the coarse class of
every id 0..181, IIC's table) and :data:`COCO_STUFF_171_TO_27` (the coarse class of each of the
171 classes, derived from the two). ReCo's own 171 -> 27 table skips the dropped ids by their
1-based numbers in a 0-based table, which sends 3 classes elsewhere (tv to furniture things
instead of electronic, book to appliance instead of indoor, banner to indoor instead of
textile); densebox uses the table as defined.
"""
from densebox.registry import DATASETS

from .base_seg import BaseSegDataset

COCO_STUFF_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator',
    'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush', 'banner',
    'blanket', 'branch', 'bridge', 'building other', 'bush', 'cabinet', 'cage', 'cardboard',
    'carpet', 'ceiling other', 'ceiling tile', 'cloth', 'clothes', 'clouds', 'counter',
    'cupboard', 'curtain', 'desk stuff', 'dirt', 'door stuff', 'fence', 'floor marble',
    'floor other', 'floor stone', 'floor tile', 'floor wood', 'flower', 'fog', 'food other',
    'fruit', 'furniture other', 'grass', 'gravel', 'ground other', 'hill', 'house', 'leaves',
    'light', 'mat', 'metal', 'mirror stuff', 'moss', 'mountain', 'mud', 'napkin', 'net',
    'paper', 'pavement', 'pillow', 'plant other', 'plastic', 'platform', 'playingfield',
    'railing', 'railroad', 'river', 'road', 'rock', 'roof', 'rug', 'salad', 'sand', 'sea',
    'shelf', 'sky other', 'skyscraper', 'snow', 'solid other', 'stairs', 'stone', 'straw',
    'structural other', 'table', 'tent', 'textile other', 'towel', 'tree', 'vegetable',
    'wall brick', 'wall concrete', 'wall other', 'wall panel', 'wall stone', 'wall tile',
    'wall wood', 'water other', 'waterdrops', 'window blind', 'window other', 'wood',
)

COCO_STUFF_IDS = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26,
    27, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 45, 46, 47, 48, 49, 50, 51, 52,
    53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 66, 69, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 83, 84, 85, 86, 87, 88, 89, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103,
    104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121,
    122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139,
    140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157,
    158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175,
    176, 177, 178, 179, 180, 181,
)

COCO_STUFF_27_CLASSES = (
    'electronic', 'appliance', 'food things', 'furniture things', 'indoor', 'kitchen',
    'accessory', 'animal', 'outdoor', 'person', 'sports', 'vehicle', 'ceiling', 'floor',
    'food stuff', 'furniture stuff', 'raw material', 'textile', 'wall', 'window', 'building',
    'ground', 'plant', 'sky', 'solid', 'structural', 'water',
)

COCO_STUFF_182_TO_27 = (
    9, 11, 11, 11, 11, 11, 11, 11, 11, 8, 8, 8, 8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6,
    6, 6, 6, 6, 6, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5, 5, 5, 5, 5, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 4, 4,
    4, 4, 4, 4, 4, 4, 17, 17, 22, 20, 20, 22, 15, 25, 16, 13, 12, 12, 17, 17, 23, 15, 15, 17,
    15, 21, 15, 25, 13, 13, 13, 13, 13, 22, 26, 14, 14, 15, 22, 21, 21, 24, 20, 22, 15, 17, 16,
    15, 22, 24, 21, 17, 25, 16, 21, 17, 22, 16, 21, 21, 25, 21, 26, 21, 24, 20, 17, 14, 21, 26,
    15, 23, 20, 21, 24, 15, 24, 22, 25, 15, 20, 17, 17, 22, 14, 18, 18, 18, 18, 18, 18, 18, 26,
    26, 19, 19, 24,
)

COCO_STUFF_171_TO_27 = tuple(COCO_STUFF_182_TO_27[i] for i in COCO_STUFF_IDS)

assert len(COCO_STUFF_CLASSES) == len(COCO_STUFF_IDS) == 171
assert len(COCO_STUFF_182_TO_27) == 182 and len(COCO_STUFF_27_CLASSES) == 27


@DATASETS.register_module()
class CocoStuff27Dataset(BaseSegDataset):
    """COCO-Stuff images with their label maps reduced to the 27 coarse classes.

    The label maps keep COCO-Stuff's ids (0..181, 255 unlabelled); loading maps every id to
    its coarse class (:data:`COCO_STUFF_182_TO_27`) and 255 stays ignored. ``ann_file`` may
    name an image list (IIC's curated ``Coco164kFull_Stuff_Coarse.txt``).
    """

    METAINFO = dict(classes=COCO_STUFF_27_CLASSES)

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.png', **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    @classmethod
    def get_label_map(cls, metainfo):
        subset = super().get_label_map(metainfo)  # a subset of the 27, or None
        mapping = {}
        for label_id in range(256):
            coarse = COCO_STUFF_182_TO_27[label_id] if label_id < 182 else 255
            mapping[label_id] = subset[coarse] if subset is not None and coarse != 255 else coarse
        return mapping

    def _subset_palette(self, metainfo):
        """The colours of the kept classes (the label map here also holds the id reduction)."""
        palette = list(self.METAINFO.get('palette') or [])
        if not palette or (metainfo and 'palette' in metainfo):
            return list(self._metainfo.get('palette') or [])
        names = list(self.METAINFO['classes'])
        return [tuple(palette[names.index(c)]) for c in self._metainfo['classes']]

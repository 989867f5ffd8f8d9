# ReCo zero-shot on COCO-Stuff-27 (val2017, IIC's curated image list): ReCo segments the 171
# COCO-Stuff classes by name and maps the prediction to the 27 coarse classes; the label maps
# go 182 -> 27 (CocoStuff27Dataset). The tables below are densebox.datasets.coco_stuff's
# COCO_STUFF_CLASSES / COCO_STUFF_27_CLASSES / COCO_STUFF_171_TO_27, written out (a test
# checks they agree).
#   python tools/test.py configs/reco_coco_stuff27.py
# Paper: 46.1 pixel accuracy / 26.3 mIoU (with CRF; not confirmed from a source).
_base_ = ['./_base_/default_runtime.py', './_base_/models/reco.py']

coco_stuff_171 = (
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
    'wall wood', 'water other', 'waterdrops', 'window blind', 'window other', 'wood',)
coco_stuff_27 = (
    'electronic', 'appliance', 'food things', 'furniture things', 'indoor', 'kitchen',
    'accessory', 'animal', 'outdoor', 'person', 'sports', 'vehicle', 'ceiling', 'floor',
    'food stuff', 'furniture stuff', 'raw material', 'textile', 'wall', 'window', 'building',
    'ground', 'plant', 'sky', 'solid', 'structural', 'water',)
# coarse class (index into coco_stuff_27) of each of the 171 classes
coco_stuff_171_to_27 = (
    9, 11, 11, 11, 11, 11, 11, 11, 11, 8, 8, 8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6,
    6, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5, 5, 5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 17, 17, 22, 20,
    20, 22, 15, 25, 16, 13, 12, 12, 17, 17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13, 13,
    22, 26, 14, 14, 15, 22, 21, 21, 24, 20, 22, 15, 17, 16, 15, 22, 24, 21, 17, 25, 16, 21, 17,
    22, 16, 21, 21, 25, 21, 26, 21, 24, 20, 17, 14, 21, 26, 15, 23, 20, 21, 24, 15, 24, 22, 25,
    15, 20, 17, 17, 22, 14, 18, 18, 18, 18, 18, 18, 18, 26, 26, 19, 19, 24,)

model = dict(classes=coco_stuff_171,
             output_classes=coco_stuff_27,
             output_mapping=coco_stuff_171_to_27,
             references='work_dirs/reco_coco_stuff27/references.pt')

test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoStuff27Dataset',
        data_root='data/coco_stuff164k/',
        ann_file='curated/val2017/Coco164kFull_Stuff_Coarse.txt',
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))

# No test-time augmentation: ReCo is evaluated on one view (its resize and centre crop),
# as the paper reports it; tools/test.py --tta says so.
tta_model = None
tta_pipeline = None

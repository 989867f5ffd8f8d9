# ReCo zero-shot on Cityscapes val, 27 classes (label ids 7..33), no pixel labels used:
#   python tools/reco.py index --images data/imagenet/train --out work_dirs/reco_index_imagenet_train \
#       --clip ViT-L-14-336 --checkpoint clip_vitl14_336_openai
#   python tools/test.py configs/reco_cityscapes.py
# (references for the 27 classes are computed on the first run and kept in work_dirs/).
# Paper / maintainer: 74.6 pixel accuracy, 19.3 mIoU (issue #6 of NoelShin/reco; with CRF).
_base_ = ['./_base_/default_runtime.py', './_base_/models/reco.py']

# The prompts are the class names; ReCo says "parking lot" for Cityscapes' "parking".
classes = ('road', 'sidewalk', 'parking lot', 'rail track', 'building', 'wall', 'fence',
           'guard rail', 'bridge', 'tunnel', 'pole', 'polegroup', 'traffic light',
           'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
           'bus', 'caravan', 'trailer', 'train', 'motorcycle', 'bicycle')
model = dict(classes=classes, references='work_dirs/reco_cityscapes/references.pt')

test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='Cityscapes27Dataset',
        data_root='data/cityscapes/',
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))

# No test-time augmentation: ReCo is evaluated on one view (its resize and centre crop),
# as the paper reports it; tools/test.py --tta says so.
tta_model = None
tta_pipeline = None

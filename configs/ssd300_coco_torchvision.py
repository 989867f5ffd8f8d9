# SSD300 COCO with torchvision's ssd300_vgg16 weights converted by
# tools/convert/torchvision_ssd.py (torchvision reports 25.1 AP on val2017).
# Everything the weights cannot carry is set to torchvision's values here.
_base_ = './ssd300_coco.py'
model = dict(
    # torchvision feeds RGB in [0, 1] with mean (0.48235, 0.45882, 0.40784) and std 1/255:
    # in 0-255 units, mean x 255 and std 1.
    data_preprocessor=dict(mean=[122.99925, 116.9991, 103.9992], std=[1.0, 1.0, 1.0]),
    # Training this config starts where torchvision's ssd300_vgg16 does: its
    # IMAGENET1K_FEATURES VGG16 (conv1_1 ... conv5_3, RGB as documented; fc6 / fc7 start
    # from Xavier). torchvision also freezes conv1_x (trainable_backbone_layers=4);
    # densebox trains every layer.
    backbone=dict(init_cfg=dict(type='Pretrained',
                                checkpoint='zoo://vgg16_features_imagenet_torchvision')),
    bbox_head=dict(
        # Same sizes as ssd300_coco.py (torchvision's scales 0.07, 0.15, ..., 1.05 of 300),
        # with torchvision's clipping of the box sizes to the input.
        anchor_generator=dict(clip=True)))
# test_cfg is torchvision's already: score 0.01, 400 per class, NMS 0.45, 200 per image.

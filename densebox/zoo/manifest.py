"""The model zoo: published weights densebox can use, where they come from, how to convert them.

Each entry:

- ``kind``: ``'model'`` (a whole detector / segmentor for ``densebox.init_model(name)``) or
  ``'backbone'`` (ImageNet weights for a backbone's ``init_cfg``).
- ``config``: the densebox config (repository-relative) the converted weights belong to, and
  ``cfg_options``: overrides of it that the source model needs (e.g. mmdetection's integer
  anchor sizes).
- ``url``: the published file. ``sha256``: its full SHA-256 when known, else None;
  ``sha256_prefix``: the hash prefix the publisher put in the file name (torchvision's and
  OpenMMLab's names end in the first 8 hex digits of the file's SHA-256), always checked.
  A file whose full SHA-256 is not recorded is only used with ``allow_unverified=True``
  (the prefix is still checked); the hash densebox computed is printed so it can be added.
- ``converter`` (a name in :data:`densebox.zoo.converters.CONVERTERS`) and
  ``converter_args``.
- ``source``, ``metric`` (as published), ``license``: for people.

mmdetection's anchor sizes: see :func:`densebox.converters.mmdet_ssd.mmdet_ssd_anchor_sizes`
(tests check the values written here against it).
"""

_MMDET = 'https://download.openmmlab.com/mmdetection/v2.0'
_IFORMER = 'https://huggingface.co/sail/dl2/resolve/main/iformer'

MANIFEST = {
    # ------------------------------------------------------------------- detection
    'ssd300_coco_torchvision': dict(
        kind='model', task='det',
        config='configs/ssd300_coco_torchvision.py',
        url='https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth',
        sha256=None, sha256_prefix='b556d3b4',
        converter='torchvision_ssd300',
        source='torchvision ssd300_vgg16, COCO_V1 weights',
        metric={'coco/bbox_mAP': 25.1}, license='BSD-3-Clause'),
    'ssd300_coco_mmdet': dict(
        kind='model', task='det',
        config='configs/ssd300_coco.py',
        url=f'{_MMDET}/ssd/ssd300_coco/ssd300_coco_20210803_015428-d231a06e.pth',
        sha256=None, sha256_prefix='d231a06e',
        converter='mmdet_ssd',
        source='mmdetection configs/ssd/ssd300_coco.py (120 epochs)',
        metric={'coco/bbox_mAP': 25.5}, license='Apache-2.0'),
    'ssd512_coco_mmdet': dict(
        kind='model', task='det',
        config='configs/ssd512_coco.py',
        cfg_options={
            'model.bbox_head.anchor_generator.min_sizes': [20, 51, 133, 215, 296, 378, 460],
            'model.bbox_head.anchor_generator.max_sizes': [51, 133, 215, 296, 378, 460, 542]},
        url=f'{_MMDET}/ssd/ssd512_coco/ssd512_coco_20210803_022849-0a47a1ca.pth',
        sha256=None, sha256_prefix='0a47a1ca',
        converter='mmdet_ssd',
        source='mmdetection configs/ssd/ssd512_coco.py (120 epochs)',
        metric={'coco/bbox_mAP': 29.5}, license='Apache-2.0'),
    'ssd300_voc_mmdet': dict(
        kind='model', task='det',
        config='configs/ssd300_voc.py',
        url=f'{_MMDET}/pascal_voc/ssd300_voc0712/ssd300_voc0712_20220320_194658-17edda1b.pth',
        sha256=None, sha256_prefix='17edda1b',
        converter='mmdet_ssd',
        source='mmdetection configs/pascal_voc/ssd300_voc0712.py',
        metric={'pascal_voc/mAP': 76.5}, license='Apache-2.0'),
    'ssd512_voc_mmdet': dict(
        kind='model', task='det',
        config='configs/ssd512_voc.py',
        cfg_options={
            'model.bbox_head.anchor_generator.min_sizes': [35, 76, 153, 230, 307, 384, 460],
            'model.bbox_head.anchor_generator.max_sizes': [76, 153, 230, 307, 384, 460, 537]},
        url=f'{_MMDET}/pascal_voc/ssd512_voc0712/ssd512_voc0712_20220320_194717-03cefefe.pth',
        sha256=None, sha256_prefix='03cefefe',
        converter='mmdet_ssd',
        source='mmdetection configs/pascal_voc/ssd512_voc0712.py',
        metric={'pascal_voc/mAP': 79.5}, license='Apache-2.0'),
    # mmdetection's SSDLite taps MobileNetV2's stage-5 output (96 channels, stride 16)
    # where densebox's recipe (like the paper and torchvision) taps the 576-channel
    # expansion of layer 15; its BN eps is 1e-3 (folded in by the converter).
    'ssdlite_mobilenetv2_coco_mmdet': dict(
        kind='model', task='det',
        config='configs/ssdlite_mobilenetv2_coco.py',
        cfg_options={
            'model.backbone.out_indices': [4, 7],
            'model.neck.in_channels': [96, 1280],
            'model.neck.out_channels': [96, 1280, 512, 256, 256, 128],
            'model.bbox_head.in_channels': [96, 1280, 512, 256, 256, 128]},
        url=(f'{_MMDET}/ssd/ssdlite_mobilenetv2_scratch_600e_coco/'
             'ssdlite_mobilenetv2_scratch_600e_coco_20210629_110627-974d9307.pth'),
        sha256=None, sha256_prefix='974d9307',
        converter='mmdet_ssd', converter_args={'source_bn_eps': 1e-3},
        source='mmdetection configs/ssd/ssdlite_mobilenetv2_scratch_600e_coco.py',
        metric={'coco/bbox_mAP': 21.3}, license='Apache-2.0'),
    # --------------------------------------------------------- ImageNet backbones
    'mobilenet_v2_imagenet_torchvision': dict(
        kind='backbone', task='cls', config=None,
        url='https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth',
        sha256=None, sha256_prefix='7ebf99e0',
        converter='torchvision_backbone', converter_args={'arch': 'mobilenet_v2'},
        source='torchvision mobilenet_v2 IMAGENET1K_V2 (for MobileNetV2 backbones)',
        metric={'imagenet/top1': 72.154}, license='BSD-3-Clause'),
    'resnet18_imagenet_torchvision': dict(
        kind='backbone', task='cls', config=None,
        url='https://download.pytorch.org/models/resnet18-f37072fd.pth',
        sha256=None, sha256_prefix='f37072fd',
        converter='torchvision_backbone', converter_args={'arch': 'resnet18'},
        source="torchvision resnet18 IMAGENET1K_V1 (for FFNetResNet arch='18')",
        metric={'imagenet/top1': 69.758}, license='BSD-3-Clause'),
    'resnet34_imagenet_torchvision': dict(
        kind='backbone', task='cls', config=None,
        url='https://download.pytorch.org/models/resnet34-b627a593.pth',
        sha256=None, sha256_prefix='b627a593',
        converter='torchvision_backbone', converter_args={'arch': 'resnet34'},
        source="torchvision resnet34 IMAGENET1K_V1 (for FFNetResNet arch='34')",
        metric={'imagenet/top1': 73.314}, license='BSD-3-Clause'),
    # iFormer (sail-sg/iFormer, models/inception_transformer.py default_cfgs): ImageNet-1k
    # classifiers; converted to IFormer backbone weights (the classifier head is dropped).
    # Hugging Face file names carry no hash, so only the full SHA-256, once recorded, checks them.
    'iformer_s_in1k': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_IFORMER}/iformer_small.pth',
        sha256=None, sha256_prefix=None,
        converter='iformer_official',
        converter_args={'arch': 's', 'pretrain_img_size': 224},
        source="official iformer_small (for IFormer arch='s')",
        metric={'imagenet/top1': 83.4}, license='Apache-2.0'),
    'iformer_s_384_in1k': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_IFORMER}/iformer_small_384.pth',
        sha256=None, sha256_prefix=None,
        converter='iformer_official',
        converter_args={'arch': 's', 'pretrain_img_size': 384},
        source="official iformer_small_384 (for IFormer arch='s', pretrain_img_size=384)",
        metric={'imagenet/top1': 84.6}, license='Apache-2.0'),
    'iformer_b_in1k': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_IFORMER}/iformer_base.pth',
        sha256=None, sha256_prefix=None,
        converter='iformer_official',
        converter_args={'arch': 'b', 'pretrain_img_size': 224},
        source="official iformer_base (for IFormer arch='b')",
        metric={'imagenet/top1': 84.6}, license='Apache-2.0'),
    'iformer_b_384_in1k': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_IFORMER}/iformer_base_384.pth',
        sha256=None, sha256_prefix=None,
        converter='iformer_official',
        converter_args={'arch': 'b', 'pretrain_img_size': 384},
        source="official iformer_base_384 (for IFormer arch='b', pretrain_img_size=384)",
        metric={'imagenet/top1': 85.7}, license='Apache-2.0'),
    'iformer_l_in1k': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_IFORMER}/iformer_large.pth',
        sha256=None, sha256_prefix=None,
        converter='iformer_official',
        converter_args={'arch': 'l', 'pretrain_img_size': 224},
        source="official iformer_large (for IFormer arch='l')",
        metric={'imagenet/top1': 84.8}, license='Apache-2.0'),
    'iformer_l_384_in1k': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_IFORMER}/iformer_large_384.pth',
        sha256=None, sha256_prefix=None,
        converter='iformer_official',
        converter_args={'arch': 'l', 'pretrain_img_size': 384},
        source="official iformer_large_384 (for IFormer arch='l', pretrain_img_size=384)",
        metric={'imagenet/top1': 85.8}, license='Apache-2.0'),
}

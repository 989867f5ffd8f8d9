"""The model zoo: published weights densebox can use, where they come from, how to convert them.

Each entry:

- ``kind``: ``'model'`` (a whole detector / segmentor for ``densebox.init_model(name)``),
  ``'backbone'`` (ImageNet weights for a backbone's ``init_cfg``) or ``'clip'`` (a whole
  CLIP model for :func:`densebox.models.backbones.clip.build_clip`, named in open_clip's
  terms by ``open_clip_name``).
- ``config``: the densebox config (repository-relative) the converted weights belong to, and
  ``cfg_options``: overrides of it that the source model needs (e.g. mmdetection's integer
  anchor sizes).
- ``url``: the published file. ``sha256``: its full SHA-256 when known, else None;
  ``sha256_prefix``: the hash prefix the publisher put in the file name (torchvision's and
  OpenMMLab's names end in the first 8 hex digits of the file's SHA-256), always checked
  (None where the name carries none).
  A file whose full SHA-256 is not recorded is only used with ``allow_unverified=True``
  (the prefix is still checked); the hash densebox computed is printed so it can be added.
  Backbone starting points named by a recipe (``zoo://NAME``, see
  :mod:`densebox.zoo.starting_points`) are used that way.
- ``archive_member``: for a published zip, the file inside it that holds the weights (it
  is extracted next to the zip in the cache; putting the extracted file there works too).
- ``converter`` (a name in :data:`densebox.zoo.converters.CONVERTERS`) and
  ``converter_args``.
- ``source``, ``metric`` (as published), ``license``: for people.

mmdetection's anchor sizes: see :func:`densebox.converters.mmdet_ssd.mmdet_ssd_anchor_sizes`
(tests check the values written here against it).
"""

_MMDET = 'https://download.openmmlab.com/mmdetection/v2.0'
_OPENAI_CLIP = 'https://openaipublic.azureedge.net/clip/models'
_FFNET = 'https://github.com/Qualcomm-AI-research/FFNet/releases/download/models'
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
    # The reduced-fc VGG16 of Caffe SSD (VGG_ILSVRC_16_layers_fc_reduced), as OpenMMLab
    # converted it (mmdetection's open-mmlab://vgg16_caffe): Caffe weights, trained on BGR
    # 0-255 minus the mean; the converter reorders conv1_1 for densebox's RGB input.
    'vgg16_reducedfc_imagenet_openmmlab': dict(
        kind='backbone', task='cls', config=None,
        url='https://download.openmmlab.com/pretrain/third_party/vgg16_caffe-292e1171.pth',
        sha256=None, sha256_prefix='292e1171',
        converter='vgg16_reducedfc', converter_args={'channel_order': 'bgr'},
        source="Caffe SSD's VGG_ILSVRC_16_layers_fc_reduced (ImageNet VGG16, fc6 / fc7 as "
               "1024-channel convs), OpenMMLab's vgg16_caffe; for SSDVGG",
        metric={}, license='CC-BY-4.0 (VGG16 ImageNet models, Simonyan & Zisserman)'),
    # torchvision's IMAGENET1K_FEATURES (ported from ssd.pytorch): conv1_1 ... conv5_3 only,
    # documented input RGB 0-255 minus (123, 117, 104); fc6 / fc7 start from Xavier, as in
    # torchvision's ssd300_vgg16.
    'vgg16_features_imagenet_torchvision': dict(
        kind='backbone', task='cls', config=None,
        url='https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth',
        sha256=None, sha256_prefix='88682ab5',
        converter='vgg16_reducedfc', converter_args={'channel_order': 'rgb'},
        source='torchvision VGG16_Weights.IMAGENET1K_FEATURES (features only), the start of '
               'torchvision ssd300_vgg16; for SSDVGG',
        metric={}, license='BSD-3-Clause (torchvision); VGG16 weights CC-BY-4.0'),
    # FFNet's own ImageNet classifiers; the backbone part of the state dict inside the zip.
    # No hash is published: the zip's CRC and the converter's key / shape check are what
    # verifies them.
    'ffnet78s_imagenet_qualcomm': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_FFNET}/ffnet78S.zip',
        archive_member='ffnet78S/ffnet78S_BBX_imagenet_state_dict_quarts.pth',
        sha256=None, sha256_prefix=None,
        converter='ffnet_imagenet', converter_args={'arch': '78S'},
        source="FFNet classification_ffnet78S_BBX_mobile (ImageNet), the start of "
               "segmentation_ffnet78S_dBBB_mobile; for FFNetResNet arch='78S' / 'd78S'",
        metric={}, license='BSD-3-Clause-Clear (Qualcomm)'),
    'ffnet150_imagenet_qualcomm': dict(
        kind='backbone', task='cls', config=None,
        url=f'{_FFNET}/ffnet150.zip',
        archive_member='ffnet150/ffnet150_AAX_imagenet_state_dict_quarts.pth',
        sha256=None, sha256_prefix=None,
        converter='ffnet_imagenet', converter_args={'arch': '150'},
        source="FFNet classification_ffnet150_AAX (ImageNet), the start of "
               "segmentation_ffnet150_AAA; for FFNetResNet arch='150'",
        metric={}, license='BSD-3-Clause-Clear (Qualcomm)'),
    'resnet101_imagenet_torchvision': dict(
        kind='backbone', task='cls', config=None,
        url='https://download.pytorch.org/models/resnet101-63fe2227.pth',
        sha256=None, sha256_prefix='63fe2227',
        converter='torchvision_classifier_trunk',
        source='torchvision resnet101 IMAGENET1K_V1 (for TorchvisionResNet depth=101, ReCo+)',
        metric={'imagenet/top1': 77.374}, license='BSD-3-Clause'),
    'resnet34_imagenet_torchvision': dict(
        kind='backbone', task='cls', config=None,
        url='https://download.pytorch.org/models/resnet34-b627a593.pth',
        sha256=None, sha256_prefix='b627a593',
        converter='torchvision_backbone', converter_args={'arch': 'resnet34'},
        source="torchvision resnet34 IMAGENET1K_V1 (for FFNetResNet arch='34')",
        metric={'imagenet/top1': 73.314}, license='BSD-3-Clause'),
    # ----------------------------------------------------------------- segmentation
    # DenseCLIP's released ADE20K Semantic FPN models (raoyongming/DenseCLIP README; Tsinghua
    # Cloud share links, no published hash: use allow_unverified=True, or put the file at
    # ~/.cache/densebox/checkpoints/downloads/<entry name>.pth). mIoU single-scale.
    **{f'denseclip_{key}_fpn_ade20k_official': dict(
        kind='model', task='seg', config=f'configs/denseclip_{key}_fpn_ade20k.py',
        url=f'https://cloud.tsinghua.edu.cn/f/{share}/?dl=1', sha256=None, sha256_prefix=None,
        converter='denseclip_official',
        source=f'DenseCLIP {title} (raoyongming/DenseCLIP, segmentation)',
        metric={'mIoU': miou}, license='MIT')
       for key, title, share, miou in [
           ('r50', 'RN50-DenseCLIP', '8636d4a95c60418ba63c', 43.5),
           ('r101', 'RN101-DenseCLIP', 'bd478735bd9040ab9603', 45.1),
           ('vitb16', 'ViT-B-DenseCLIP (640)', 'b423bca9436349c0991f', 50.6),
       ]},
    # ------------------------------------------------------------------ CLIP (open_clip)
    # OpenAI's releases are TorchScript archives; densebox reads their weights without running
    # them (densebox.engine.torchscript_weights). The folder in each URL is the file's SHA-256.
    # Used as build_clip(model_name=open_clip_name, checkpoint='clip_rn50_openai').
    **{f'clip_{key}_openai': dict(
        kind='clip', task='clip', config=None, open_clip_name=open_clip_name,
        url=f'{_OPENAI_CLIP}/{sha256}/{file_name}', sha256=sha256, sha256_prefix=None,
        converter='clip_state_dict',
        source=f'OpenAI CLIP {open_clip_name} (github.com/openai/CLIP)', metric={},
        license='MIT')
       for key, open_clip_name, sha256, file_name in [
           ('rn50', 'RN50',
            'afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762', 'RN50.pt'),
           ('rn101', 'RN101',
            '8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599', 'RN101.pt'),
           ('rn50x16', 'RN50x16',
            '52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa', 'RN50x16.pt'),
           ('vitb16', 'ViT-B-16',
            '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f', 'ViT-B-16.pt'),
           ('vitl14_336', 'ViT-L-14-336',
            '3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02',
            'ViT-L-14-336px.pt'),
       ]},
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

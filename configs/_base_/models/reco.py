# ReCo (Shin, Xie and Albanie, NeurIPS'22): training-free zero-shot segmentation.
# - retrieval: CLIP ViT-L/14@336px image embeddings of an unlabelled index (ImageNet-1K train,
#   labels unused; build it with tools/reco.py index), top k = 50 images per class;
# - dense features of the 50 images (224, resize + centre crop): DeiT-S/16 trained on
#   Stylized-ImageNet (Naseer et al.), 384-d at stride 16; DINO ViT-S/16 can be swapped in:
#   extractor=dict(type='TimmViTFeatures', model_name='vit_small_patch16_224',
#                  checkpoint='checkpoints/dino_deitsmall16_pretrain.pth');
# - language guidance and inference guidance: MaskCLIP ("DenseCLIP" in the paper) on CLIP
#   RN50x16, sigmoid(10 cos(pixel, text)), prompts: the 85 templates;
# - context elimination with tree, sky, building, road, person; "vegetation" takes "tree"'s
#   reference, as in the reference code.
# Weights: the CLIPs are zoo entries (files in ~/.cache/densebox/checkpoints/downloads, see
# README "Open-vocabulary segmentation"); the DeiT file goes to checkpoints/.
# Departure: each network normalises the [0, 1] input with its own mean / std (the reference
# code feeds ImageNet-normalised images to MaskCLIP too).
model = dict(
    type='ReCoSegmentor',
    data_preprocessor=dict(type='SegDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255],
                           pad_size_divisor=32),
    clip=dict(model_name='RN50x16', checkpoint='clip_rn50x16_openai'),
    extractor=dict(type='TimmViTFeatures', model_name='deit_small_distilled_patch16_224',
                   checkpoint='checkpoints/deit_s_sin_dist.pth'),
    classes=None,  # set by the data set config
    references=None,
    retrieval=dict(index='work_dirs/reco_index_imagenet_train',
                   clip=dict(model_name='ViT-L-14-336', checkpoint='clip_vitl14_336_openai'),
                   k=50, image_size=224, batch_size=16),
    dense_clip_inference=True,
    language_guidance=True,
    context_elimination=True,
    context_classes=('tree', 'sky', 'building', 'road', 'person'),
    aliases=dict(vegetation='tree'),
    temperature=10.0,
    # The paper's tables report ReCo with a dense CRF (10 iterations; needs pydensecrf:
    # pip install "densebox[crf]"); crf=True turns it on.
    crf=False)

# ReCo's evaluation protocol (from its code): shorter side resized to 320, the central
# 320 x 320 crop scored against the label resized (nearest) and cropped the same way. Its
# transform resizes the image with nearest interpolation as well.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='Resize', scale=(4096, 320), keep_ratio=True, interpolation='nearest'),
    dict(type='CenterCrop', crop_size=320, as_original=True),
    dict(type='PackSegInputs'),
]
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')

# DenseCLIP with CLIP ViT-B/16 + Semantic FPN at 640 x 640 (Rao et al., CVPR'22;
# raoyongming/DenseCLIP, segmentation/configs/denseclip_fpn_vit-b_640x640_80k.py).
# - backbone: CLIP's ViT-B/16 image tower (open_clip) from OpenAI's weights, drop path
#   0.1; the tokens after blocks 3, 5, 7, 11 (768 x 40 x 40 at 640) become strides 4 / 8 /
#   16 / 32 (two 2x transposed convs with BN + GELU between, one, identity, 2x2 max pool,
#   each after GroupNorm(1)); ln_post + proj give the global and dense 512-d embeddings.
#   The positional embedding is held at 40 x 40 and resized to each input.
# - text: the ADE20K class names, [SOS] + 8 learnable 512-d contexts + name + [EOS]
#   (13 tokens) through CLIP's frozen text tower -> 512-d class embeddings.
# - context decoder: 3 layers, width 256, 4 heads, dropout 0.1; gamma initialised to 1e-4.
# - score map (150 x H/16 x W/16) concatenated to the stride-16 level (768 + 150); FPN
#   (256) + Semantic FPN head (256 channels, SyncBN, dropout 0.1).
# - losses: cross-entropy of the head + 0.4 x cross-entropy of score map / 0.07.
# Like the original, the class token gets the class embedding twice (as the token and
# added to its positional embedding), so released DenseCLIP ViT weights compute the same.
# The CLIP weights are the zoo entry 'clip_vitb16_openai' (OpenAI's ViT-B-16.pt); put it in
# ~/.cache/densebox/checkpoints/downloads/ (README, DenseCLIP).
clip_weights = 'clip_vitb16_openai'
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when not distributed
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[122.7709383, 116.7460125, 104.09373615],  # CLIP's RGB mean / std x 255
    std=[68.5005327, 66.6321579, 70.32316304],
    pad_size_divisor=1,            # test images go to slide inference unpadded
    seg_pad_value=255)
model = dict(
    type='DenseCLIP',
    data_preprocessor=data_preprocessor,
    class_names='ADE20KDataset',
    class_name_length=5,
    score_concat_index=2,          # the stride-16 level
    tau=0.07,
    backbone=dict(
        type='CLIPVisionTransformer',
        arch='ViT-B-16',
        input_resolution=640,
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.1,
        get_embeddings=True,
        quick_gelu=True,
        norm_cfg=norm_cfg,
        pretrained=clip_weights),
    text_encoder=dict(
        type='CLIPTextContextEncoder',
        arch='ViT-B-16',
        context_length=13,
        quick_gelu=True,
        frozen=True,
        pretrained=clip_weights),
    context_decoder=dict(
        type='ContextDecoder',
        visual_dim=512,
        transformer_width=256,
        transformer_heads=4,
        transformer_layers=3,
        dropout=0.1),
    neck=dict(
        type='FPN',
        in_channels=[768, 768, 768 + 150, 768],
        out_channels=256,
        num_outs=4),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=256,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    pixel_text_loss=dict(type='CrossEntropyLoss', loss_weight=0.4),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(640, 640), stride=(426, 426)))

# DenseCLIP with CLIP RN101 + Semantic FPN (Rao et al., CVPR'22; raoyongming/DenseCLIP,
# segmentation/configs/denseclip_fpn_res101_512x512_80k.py).
# - backbone: CLIP's RN101 image tower (open_clip) from OpenAI's weights, C2-C5 plus the
#   attention pool over all C5 positions (global + dense 512-d embeddings); its
#   positional embedding is held at 16 x 16 (512 / 32) and resized to each input.
# - text: the ADE20K class names, [SOS] + 8 learnable 512-d contexts + name + [EOS]
#   (13 tokens) through CLIP's frozen text tower -> 512-d class embeddings.
# - context decoder (post-model prompting): 3 layers, width 256, 4 heads, dropout 0.1;
#   text += gamma * decoder(text, [global; dense]), gamma initialised to 1e-4.
# - score map (150 x H/32 x W/32, cosine) concatenated to C5 (2048 + 150 channels); FPN
#   (256) + Semantic FPN head (256 channels, SyncBN, dropout 0.1).
# - losses: cross-entropy of the head + 0.4 x cross-entropy of score map / 0.07.
# The CLIP weights are the zoo entry 'clip_rn101_openai' (OpenAI's RN101.pt, read without
# running it); put RN101.pt in ~/.cache/densebox/checkpoints/downloads/ (README, DenseCLIP).
# Model size as the paper counts it: see paper_model_size in the top-level config.
clip_weights = 'clip_rn101_openai'
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
    class_names='ADE20KDataset',   # the class names of this data set, in label order
    class_name_length=5,           # [SOS] name [EOS] padded: the repo's context_length=5
    score_concat_index=3,          # C5
    tau=0.07,
    backbone=dict(
        type='CLIPResNet',
        arch='RN101',
        input_resolution=512,
        get_embeddings=True,
        pretrained=clip_weights),
    text_encoder=dict(
        type='CLIPTextContextEncoder',
        arch='RN101',
        context_length=13,         # 5 name tokens + 8 learnable contexts
        quick_gelu=True,           # OpenAI's CLIP uses QuickGELU
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
        in_channels=[256, 512, 1024, 2048 + 150],
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
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

# DenseCLIP, CLIP ViT-B/16 + Semantic FPN at 640 x 640 (Rao et al., CVPR'22).
# ADE20K, 640x640 crops, AdamW 1e-4 (backbone x0.1, text encoder frozen), poly with
# 1500-iteration warm-up, 80k iterations, total batch 32 (8 GPUs x 4), slide inference
# 640 / stride 426. Published (DenseCLIP README / paper Table 1): 50.6 / 51.3 mIoU on ADE20K
# val (single scale / multi-scale). CLIP weights: the zoo entry 'clip_vitb16_openai' (ViT-B-16.pt in
# ~/.cache/densebox/checkpoints/downloads/); training stops at once, naming the file,
# when it is missing.
_base_ = [
    './_base_/models/denseclip_vitb16.py',
    './_base_/datasets/ade20k_640x640.py',
    './_base_/schedules/denseclip_adamw_80k.py',
    './_base_/default_runtime.py',
]
sync_bn = 'torch'  # every BN synchronised across GPUs, as the original (backbone included)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=8000, save_best='mIoU', rule='greater'),
    logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)
# Model size as the paper's table counts it (tools/analyze_model.py prints densebox's
# count beside it): parameters without the frozen CLIP text encoder; GFLOPs counted by
# fvcore (one multiply-add = 1 FLOP) at a 640 x 640 input (the original get_flops.py's
# default shape), the text encoder not counted. That count took each of the three
# stride-2 transposed convs of the backbone's multi-scale outputs at 4x its multiply-adds
# (kernel area x output pixels): 174 G of the 1043.1; densebox counts each multiply-add
# once and gets 867.5 (+ 174 = 1041.5).
paper_model_size = dict(params=(105.3e6), flops=(1043.1e9), shape=(1024, 1024),
                        exclude=['text_encoder'])

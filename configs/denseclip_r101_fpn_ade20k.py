# DenseCLIP, CLIP RN101 + Semantic FPN (Rao et al., CVPR'22).
# ADE20K, 512x512 crops, AdamW 1e-4 (backbone x0.1, text encoder frozen), poly with
# 1500-iteration warm-up, 80k iterations, total batch 32 (8 GPUs x 4), slide inference
# 512 / stride 341. Published (DenseCLIP README / paper Table 1): 45.1 / 46.5 mIoU on ADE20K
# val (single scale / multi-scale). CLIP weights: the zoo entry 'clip_rn101_openai' (RN101.pt in
# ~/.cache/densebox/checkpoints/downloads/); training stops at once, naming the file,
# when it is missing.
_base_ = [
    './_base_/models/denseclip_r101.py',
    './_base_/datasets/ade20k.py',
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
# fvcore (one multiply-add = 1 FLOP) at a 1024 x 1024 input (the original get_flops.py's
# default shape), the text encoder not counted.
paper_model_size = dict(params=(67.8e6), flops=(346.3e9), shape=(1024, 1024),
                        exclude=['text_encoder'])

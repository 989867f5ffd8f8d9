# SG-Former-S + UperNet on ADE20K: SG-Former-B's recipe with the S backbone (widths
# 64 / 128 / 256 / 512). The paper's S results were not read here.
_base_ = ['./upernet_sgformer_b_ade20k_160k.py']
model = dict(
    backbone=dict(arch='s', init_cfg=dict(checkpoint='checkpoints/sgformer_s_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

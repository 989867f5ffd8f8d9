# SG-Former-M + UperNet on ADE20K: SG-Former-B's recipe with the M backbone (widths
# 64 / 128 / 256 / 512). The paper's M results were not read here.
_base_ = ['./upernet_sgformer_b_ade20k_160k.py']
model = dict(
    backbone=dict(arch='m', init_cfg=dict(checkpoint='checkpoints/sgformer_m_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

# SSD512 with an SG-Former-S backbone on COCO 2017: densebox's first detection recipe for
# SG-Former (the paper's COCO results use Mask R-CNN / RetinaNet; SG-Former-B: 51.2 box AP;
# those recipes come later). Neither paper gives an SSD recipe, so this one is densebox's own:
# SSD512's data, default boxes and schedule (24 epochs of a 5x repeated train2017, lr / 10 at
# 16 and 20), with the optimiser of the transformer detection recipes (AdamW lr 1e-4, weight
# decay 0.05, none on norms and the positional embedding) instead of SGD. Not trained yet.
# The stride-8 / 16 / 32 stage outputs (128 / 256 / 512 channels) replace conv4_3 and fc7;
# the SSD neck adds four levels (strides 64 ... 512, the last a 4x4 conv).
_base_ = ['./ssd512_iformer_s_coco.py']
levels = (128, 256, 512, 256, 256, 256, 256)   # maps of 64, 32, 16, 8, 4, 2, 1 at 512 x 512
model = dict(
    backbone=dict(
        _delete_=True,
        type='SGFormer',
        arch='s',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        # the official weights converted with tools/convert/sgformer.py (see README)
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/sgformer_s_in1k.pth')),
    neck=dict(in_channels=levels[:3], out_channels=levels),
    bbox_head=dict(in_channels=levels))

# SSD512: one more extra level, the last with a 4x4 kernel, and 7 sets of default boxes.
_base_ = ['./ssd300.py']
model = dict(
    neck=dict(
        out_channels=(512, 1024, 512, 256, 256, 256, 256),  # maps of 64, 32, 16, 8, 4, 2, 1
        level_strides=(2, 2, 2, 2, 1),
        level_paddings=(1, 1, 1, 1, 1),
        last_kernel_size=4),
    bbox_head=dict(
        in_channels=(512, 1024, 512, 256, 256, 256, 256),
        anchor_generator=dict(
            input_size=512,
            strides=(8, 16, 32, 64, 128, 256, 512),
            min_sizes=(35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8),
            max_sizes=(76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
            ratios=([2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]))))

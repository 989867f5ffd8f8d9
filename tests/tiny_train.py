"""Tiny training runs for the reliability tests: the quickstart SSD on a few generated shapes
images, deterministic (no random augmentation, no workers, deterministic kernels)."""
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tiny_det_config(path, data_root: str, max_epochs: int = 2, batch_size: int = 2,
                    extra: str = '') -> str:
    """Write a config training the quickstart SSD on ``data_root`` (made by
    ``generate_shapes``) and return its path; ``extra`` is appended as config text."""
    data_root = data_root.rstrip('/') + '/'
    text = f'''
_base_ = [{osp.join(ROOT, 'configs', 'quickstart_ssd_shapes.py')!r}]
data_root = {data_root!r}
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_interval=100)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[1], gamma=0.5)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=5))
randomness = dict(seed=0, deterministic=True)
'''
    with open(path, 'w') as f:
        f.write(text + extra)
    return str(path)

# Runtime shared by every recipe: logging, checkpointing, environment.
default_scope = 'densebox'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),          # progress and ETA every 50 iters
    param_scheduler=dict(type='ParamSchedulerHook'),
    # densebox's CheckpointHook: mmengine's, with its arguments checked when built and old
    # checkpoints deleted only after the new one is written
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto',
                    rule='greater'),  # keep the best checkpoint by the first metric
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # stop at the first NaN / Inf loss before the optimizer step ('skip' drops such steps)
    nonfinite=dict(type='NonFiniteLossHook', mode='stop', max_consecutive_skips=10),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]  # <work_dir>/<timestamp>/vis_data/scalars.json
# TensorBoard too (pip install "densebox[tensorboard]"; or --tensorboard on train / test):
# vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False

"""The total batch a run uses, against the total its recipe was designed for.

``train_dataloader.batch_size`` is per process (per GPU): 32 images per GPU on 8 GPUs is
a total batch of 256, with the learning rate set for 32 and an eighth of the iterations per
epoch. Each recipe records the total its learning rate and schedule were set for as
``auto_scale_lr.base_batch_size`` (with a comment ``per-GPU x GPUs`` as in its source).
:func:`report_total_batch` logs the run's total (processes x per-process batch x gradient
accumulation steps) when training starts and warns when it differs from the recipe's
without ``--auto-scale-lr``.

mmengine's ``--auto-scale-lr`` rule scales the learning rate by
``processes x per-process batch / base_batch_size``; it does not count
``optim_wrapper.accumulative_counts``, so that case gets a warning too.
"""
import logging
from typing import NamedTuple, Optional

__all__ = ['TotalBatch', 'total_batch', 'report_total_batch']


class TotalBatch(NamedTuple):
    per_process: int
    processes: int
    accumulation: int
    base: Optional[int]  # the recipe's auto_scale_lr.base_batch_size, None when absent

    @property
    def total(self) -> int:
        return self.per_process * self.processes * self.accumulation


def total_batch(cfg, world_size: int) -> Optional[TotalBatch]:
    """The run's batch arithmetic from the config; None when it trains on no dataloader
    with a fixed ``batch_size``."""
    loader = cfg.get('train_dataloader')
    if not loader or not isinstance(loader.get('batch_size'), int):
        return None
    optim = cfg.get('optim_wrapper') or {}
    accumulation = int(optim.get('accumulative_counts', 1) or 1)
    base = (cfg.get('auto_scale_lr') or {}).get('base_batch_size')
    return TotalBatch(int(loader['batch_size']), int(world_size), accumulation,
                      int(base) if base else None)


def _lr(cfg) -> str:
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    return f'{optimizer["lr"]:g}' if isinstance(optimizer.get('lr'), (int, float)) else 'as set'


def _schedule_effect(cfg, batch: TotalBatch) -> str:
    ratio = batch.total / batch.base
    loop = cfg.get('train_cfg') or {}
    if 'max_iters' in loop:  # iteration-based: the same steps, each on more / fewer images
        return f'its {loop["max_iters"]} iterations see {ratio:.3g}x the images it counts on'
    return f'an epoch has {1 / ratio:.3g}x the iterations the recipe counts on'


def report_total_batch(cfg, world_size: int, auto_scale_lr: bool,
                       logger: Optional[logging.Logger] = None,
                       config_name: str = 'the config') -> Optional[str]:
    """Log the total batch of this run; warn when it is not the recipe's.

    Args:
        cfg: the run's config (after ``--cfg-options``).
        world_size: the number of training processes.
        auto_scale_lr: whether ``--auto-scale-lr`` is on.
        logger: where to write (default: the ``densebox`` logger).

    Returns:
        The warning, or None when the total is the recipe's (or there is nothing to compare).
    """
    logger = logger or logging.getLogger('densebox')
    batch = total_batch(cfg, world_size)
    if batch is None:
        return None
    steps = f' x {batch.accumulation} accumulation steps' if batch.accumulation > 1 else ''
    arithmetic = (f'{batch.per_process} per process x {batch.processes} '
                  f'process{"es" if batch.processes != 1 else ""}{steps}')
    if batch.base is None:
        logger.info(f'total batch {batch.total} = {arithmetic}; {config_name} records no '
                    'auto_scale_lr.base_batch_size to compare it with')
        return None
    logger.info(f'total batch {batch.total} = {arithmetic}; the schedule of {config_name} '
                f'was designed for a total of {batch.base}')
    warning = None
    if auto_scale_lr:
        if batch.accumulation > 1:
            warning = (f'--auto-scale-lr scales the learning rate by processes x per-process '
                       f'batch / {batch.base} = {batch.per_process * batch.processes}/'
                       f'{batch.base}; it does not count the {batch.accumulation} gradient '
                       f'accumulation steps of this run (total {batch.total})')
    elif batch.total != batch.base:
        per_process = batch.base // (batch.processes * batch.accumulation)
        keep = (f', or --cfg-options train_dataloader.batch_size={per_process} to keep the '
                f'recipe\'s total of {batch.base}'
                if per_process * batch.processes * batch.accumulation == batch.base else '')
        warning = (f'the total batch is {batch.total} ({arithmetic}), but the schedule of '
                   f'{config_name} was designed for {batch.base} (auto_scale_lr.'
                   f'base_batch_size): the learning rate stays {_lr(cfg)} and '
                   f'{_schedule_effect(cfg, batch)}. Add --auto-scale-lr to scale the learning '
                   f'rate by {batch.total}/{batch.base}{keep}.')
    if warning:
        logger.warning(warning)
    return warning

"""Training loops that resume exactly, from epoch and from iteration checkpoints.

mmengine's ``EpochBasedTrainLoop`` restarts the whole epoch when it resumes from an
iteration checkpoint (so the run trains more steps than an uninterrupted one), and its
``IterBasedTrainLoop`` loads and throws away every batch already trained. densebox registers
both names in its own scope (configs with ``default_scope = 'densebox'`` get these):

- a resumed epoch continues after the batches its checkpoint had trained, in the sampler's
  order for that epoch; the skipped batches are drawn as indices from the batch sampler, and
  their images are never loaded;
- the random states of Python, numpy and torch (and CUDA) go into every checkpoint and are
  restored where an uninterrupted run would have them, so random augmentation continues the
  same way (single process, ``num_workers=0``; worker processes are seeded per epoch by
  mmengine's ``worker_init_fn``, so their draws after a mid-epoch resume differ);
- validation runs with the training random state saved and put back, so validating does not
  change how training continues (and a run resumed after a validation matches one that ran it);
  with several processes, rank 0's BatchNorm statistics (the checkpoint's) are sent to all
  ranks first, so the gathered metric is the checkpoint's.

At the start of a run the temporary files of a killed checkpoint save are removed, and a
``last_checkpoint`` pointer that names a missing file (a kill between deleting and writing)
is pointed at the newest checkpoint that is there.
"""
import contextlib
import glob
import os
import os.path as osp
import random
import re
from typing import Optional

import numpy as np
import torch
from mmengine.dataset import InfiniteSampler
from mmengine.dist import barrier, broadcast, get_dist_info, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop as MMEngineEpochLoop
from mmengine.runner import IterBasedTrainLoop as MMEngineIterLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator

from densebox.registry import LOOPS

from .checkpoint import remove_stale_temp_files


# ------------------------------------------------------------------------ random state
def get_rng_state() -> dict:
    """The random states of Python, numpy, torch (CPU) and every initialised CUDA device."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_python_state(state['python']))
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_python_state(value):
    """``random.setstate`` wants tuples; a checkpoint may hand back lists."""
    version, internal, gauss = value
    return version, tuple(internal), gauss


@contextlib.contextmanager
def preserved_rng_state():
    """Run a block (validation) without changing the random state training continues with."""
    state = get_rng_state()
    try:
        yield state
    finally:
        set_rng_state(state)


# ----------------------------------------------------------------- skipping batches
class _SkippableBatchSampler:
    """Wraps a DataLoader's batch sampler: the next pass may start ``n`` batches in.

    Only index lists are drawn for the skipped batches, so their data is never loaded. Every
    other attribute (``sampler``, ``batch_size`` ...) is the wrapped sampler's.
    """

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self._skip = 0

    def skip_next_pass(self, num_batches: int) -> None:
        self._skip = num_batches

    def __iter__(self):
        skip, self._skip = self._skip, 0
        batches = iter(self.batch_sampler)
        for _ in range(skip):
            if next(batches, None) is None:
                return
        yield from batches

    def __len__(self):
        return len(self.batch_sampler)

    def __getattr__(self, name):
        return getattr(self.__dict__['batch_sampler'], name)


def _skippable(dataloader) -> Optional[_SkippableBatchSampler]:
    """Wrap ``dataloader.batch_sampler`` in place (DataLoader forbids setting it after it is
    built, hence ``object.__setattr__``); ``None`` for a loader without one."""
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    if batch_sampler is None:
        return None
    if not isinstance(batch_sampler, _SkippableBatchSampler):
        batch_sampler = _SkippableBatchSampler(batch_sampler)
        object.__setattr__(dataloader, 'batch_sampler', batch_sampler)
    return batch_sampler


# ------------------------------------------------------------- state in checkpoints
class _ResumeStateHook(Hook):
    """Registered by the loops: random state in and out of checkpoints, clean start."""
    priority = 'VERY_HIGH'

    def __init__(self, loop):
        self.loop = loop

    def before_run(self, runner) -> None:
        if is_main_process():
            _clean_start(runner)
        if get_dist_info()[1] > 1:
            barrier()  # the other ranks read last_checkpoint after rank 0 has checked it

    def before_train(self, runner) -> None:
        # A CheckpointHook out_dir holds the checkpoints in out_dir/<work dir name> (the hook
        # works that out in its own, later, before_train); the work dir was cleaned in
        # before_run.
        checkpoint_cfg = (runner.cfg.get('default_hooks') or {}).get('checkpoint') or {}
        out_dir = checkpoint_cfg.get('out_dir')
        if is_main_process() and out_dir and '://' not in str(out_dir):
            for path in remove_stale_temp_files(osp.join(str(out_dir), osp.basename(
                    runner.work_dir.rstrip(osp.sep)))):
                runner.logger.warning(f'removed {path}, left by a checkpoint save that was killed')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = self.loop.training_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume or 'rng_state' not in checkpoint:
            return
        if get_dist_info()[1] > 1:
            runner.logger.info('resuming with several processes: the random state of rank 0 '
                               'is in the checkpoint, so each rank keeps its seeded state')
            return
        self.loop.pending_rng_state = checkpoint['rng_state']


_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _clean_start(runner) -> None:
    for path in remove_stale_temp_files(runner.work_dir):
        runner.logger.warning(f'removed {path}, left by a checkpoint save that was killed')
    if not runner._resume or runner._load_from is not None:
        return
    pointer = osp.join(runner.work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return
    with open(pointer) as f:
        named = f.read().strip()
    if named and (osp.isfile(named) or '://' in named):
        return
    found = [p for p in glob.glob(osp.join(runner.work_dir, '*.pth'))
             if _CHECKPOINT_NAME.match(osp.basename(p))]
    if not found:
        runner.logger.warning(f'{pointer} names {named!r}, which does not exist, and the work '
                              'dir holds no epoch_*.pth / iter_*.pth: training starts afresh')
        os.remove(pointer)
        return
    newest = max(found, key=osp.getmtime)
    runner.logger.warning(f'{pointer} names {named!r}, which does not exist; resuming from '
                          f'the newest checkpoint there, {newest}')
    with open(pointer + '.tmp', 'w') as f:
        f.write(newest)
    os.replace(pointer + '.tmp', pointer)


class _ResumableMixin:
    """What both loops share: the companion hook and the random state bookkeeping."""

    def _setup_resume(self) -> None:
        self.pending_rng_state: Optional[dict] = None  # from the checkpoint, set at resume
        self._rng_outside_val: Optional[dict] = None
        self.batches = _skippable(self.dataloader)
        self.runner.register_hook(_ResumeStateHook(self))

    def training_rng_state(self) -> dict:
        """The state training continues with (during validation: the one saved before it)."""
        return self._rng_outside_val if self._rng_outside_val is not None else get_rng_state()

    def _restore_pending_rng_state(self) -> None:
        if self.pending_rng_state is not None:
            set_rng_state(self.pending_rng_state)
            self.pending_rng_state = None

    def _validate(self) -> None:
        if get_dist_info()[1] > 1:
            # DDP keeps each process's own BatchNorm statistics; validate, on every process,
            # the model the checkpoint holds (rank 0's), so that the gathered metric is that
            # checkpoint's.
            model = self.runner.model
            model = model.module if is_model_wrapper(model) else model
            for buffer in model.buffers():
                broadcast(buffer, src=0)
        with preserved_rng_state() as state:
            self._rng_outside_val = state
            try:
                self.runner.val_loop.run()
            finally:
                self._rng_outside_val = None


@LOOPS.register_module(name='EpochBasedTrainLoop')
class EpochBasedTrainLoop(_ResumableMixin, MMEngineEpochLoop):
    """mmengine's epoch loop, resuming mid-epoch exactly (see the module docstring).

    Args: as ``mmengine.runner.EpochBasedTrainLoop``.
    """

    def __init__(self, runner, dataloader, max_epochs: int, val_begin: int = 1,
                 val_interval: int = 1, dynamic_intervals=None) -> None:
        super().__init__(runner, dataloader, max_epochs, val_begin, val_interval,
                         dynamic_intervals)
        self._setup_resume()

    def run(self) -> torch.nn.Module:
        self.runner.call_hook('before_train')
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0
                         or self._epoch == self._max_epochs)):
                self._validate()
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        per_epoch = len(self.dataloader)
        done = self._iter - self._epoch * per_epoch  # batches of this epoch already trained
        if not 0 <= done <= per_epoch:
            raise RuntimeError(
                f'the resumed checkpoint is at iteration {self._iter} of epoch '
                f'{self._epoch + 1}, but an epoch now has {per_epoch} batches: the batch size '
                'or the data set changed since it was written')
        if done:
            self.runner.logger.info(f'resuming epoch {self._epoch + 1} after its first {done} '
                                    f'of {per_epoch} batches (skipped without loading them)')
            if self.batches is None:
                raise RuntimeError('cannot resume mid-epoch: the train dataloader has no '
                                   'batch sampler')
            self.batches.skip_next_pass(done)
        elif self.pending_rng_state is not None:
            # At an epoch boundary the uninterrupted run drew the data loader's base seed
            # from this state: restore it before the iterator is made.
            self._restore_pending_rng_state()
        batches = iter(self.dataloader)
        self._restore_pending_rng_state()  # mid-epoch: the state after batch `done`
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@LOOPS.register_module(name='IterBasedTrainLoop')
class IterBasedTrainLoop(_ResumableMixin, MMEngineIterLoop):
    """mmengine's iteration loop; on resume the trained batches are skipped as indices
    instead of being loaded (see the module docstring).

    Args: as ``mmengine.runner.IterBasedTrainLoop``.
    """

    def __init__(self, runner, dataloader, max_iters: int, val_begin: int = 1,
                 val_interval: int = 1000, dynamic_intervals=None) -> None:
        super().__init__(runner, dataloader, max_iters, val_begin, val_interval,
                         dynamic_intervals)
        self._setup_resume()
        # mmengine made an iterator already, before the batch sampler was wrapped; with
        # workers it has also prefetched indices (from InfiniteSampler's one generator). Drop
        # it (and a persistent-workers loader's cached one), start the sampler's generator
        # again, and let run() make the iterator once the resume position is known.
        self.dataloader_iterator = None
        if getattr(self.dataloader, '_iterator', None) is not None:
            self.dataloader._iterator = None
        sampler = self.dataloader.sampler
        if isinstance(sampler, InfiniteSampler):
            sampler.indices = sampler._indices_of_rank()

    def _iterator_after(self, done: int) -> _InfiniteDataloaderIterator:
        """A data iterator positioned after ``done`` trained batches, with the random state
        restored where an uninterrupted run had it."""
        sampler = self.dataloader.sampler
        epoch, offset = 0, done
        if not isinstance(sampler, InfiniteSampler):
            epoch, offset = divmod(done, len(self.dataloader))
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(epoch)
        if offset == 0:
            # the uninterrupted run made its iterator (drawing a base seed) from this state
            self._restore_pending_rng_state()
        elif self.batches is None:
            raise RuntimeError('cannot skip trained batches: the train dataloader has no '
                               'batch sampler')
        else:
            self.batches.skip_next_pass(offset)
        iterator = _InfiniteDataloaderIterator(self.dataloader)
        iterator._epoch = epoch
        self._restore_pending_rng_state()
        return iterator

    def run(self) -> torch.nn.Module:
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            self.runner.logger.info(f'resuming after {self._iter} iterations (their batches '
                                    'are skipped without loading them)')
        self.dataloader_iterator = self._iterator_after(self._iter)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self._validate()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

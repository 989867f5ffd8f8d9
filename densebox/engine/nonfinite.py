"""Stop training at a NaN / Inf loss before the optimizer step uses it.

mmengine's ``train_step`` computes the losses, sums them (``parse_losses``) and calls
``optim_wrapper.update_params`` right away, so a hook's ``after_train_iter`` would see a
non-finite loss only after its gradients have already been applied. :class:`NonFiniteLossHook`
therefore wraps the model's ``parse_losses`` (the check runs between the loss and the
backward pass) and ``train_step`` (which stops, or drops the step in ``skip`` mode).

Mixed precision: ``AmpOptimWrapper``'s gradient scaler already skips steps whose *gradients*
overflow and lowers its scale; that is left alone. The check here is on the unscaled loss,
which the scale does not affect, so a non-finite loss is a real fault under AMP too.
"""
import os.path as osp
from typing import List, Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from torch.nn.parallel import DistributedDataParallel

from densebox.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """Training met a NaN / Inf loss (or was about to write NaN / Inf weights)."""


class _NonFiniteLoss(Exception):
    """Raised inside ``parse_losses``, before backward; caught by the wrapped ``train_step``."""

    def __init__(self, terms: List[Tuple[str, str]], total: str, loss=None):
        super().__init__(terms)
        self.terms = terms  # [(name, value as text)] of the non-finite terms
        self.total = total
        self.loss = loss  # the summed loss tensor, still attached to the graph


def _loss_terms(log_vars: dict) -> List[Tuple[str, torch.Tensor]]:
    """The terms that make up the total loss (mmengine sums the keys containing 'loss')."""
    return [(k, v) for k, v in log_vars.items()
            if k != 'loss' and 'loss' in k and isinstance(v, torch.Tensor)]


def _non_finite_terms(log_vars: dict) -> Optional[Tuple[List[Tuple[str, str]], str]]:
    """``None`` when every loss term (and their sum) is finite on every process."""
    terms = _loss_terms(log_vars) + [('loss', log_vars['loss'])]
    finite = torch.stack([torch.isfinite(v.detach()).all() for _, v in terms])
    bad = (~finite).to(torch.int32)
    if torch_dist.is_available() and torch_dist.is_initialized():
        # Every process must take the same decision, or DDP's gradient all-reduce hangs.
        local = bad.clone()
        torch_dist.all_reduce(bad, op=torch_dist.ReduceOp.MAX)
    else:
        local = bad
    if not bool(bad.any()):
        return None
    named = [(name, f'{value.detach().float().mean().item()}' if local[i] else 'non-finite on '
              'another process') for i, (name, value) in enumerate(terms[:-1]) if bad[i]]
    if not named:  # each term finite, their sum overflows
        named = [('loss', 'the sum of finite terms overflows')]
    return named, f'{log_vars["loss"].detach().float().item()}'


def _describe(terms: List[Tuple[str, str]]) -> str:
    """``loss term 'loss_cls' (nan) is`` / ``loss terms 'a' (nan) and 'b' (inf) are``."""
    named = [f'{name!r} ({value})' for name, value in terms]
    if len(named) == 1:
        return f'loss term {named[0]} is'
    return f'loss terms {", ".join(named[:-1])} and {named[-1]} are'


def _image_files(data) -> List[str]:
    samples = data.get('data_samples') if isinstance(data, dict) else None
    return [s.img_path for s in samples or () if 'img_path' in s]


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop at the first NaN / Inf loss, or drop such steps, before they change the weights.

    Args:
        mode: ``'stop'`` raises :class:`NonFiniteLossError` naming the iteration and the loss
            term(s); the optimizer step is not taken and no checkpoint is written, so the last
            checkpoint on disk holds the last good weights. ``'skip'`` drops the step (no
            backward, no optimizer step), counts it (``skipped_steps`` in the log) and goes on.
        max_consecutive_skips: in ``skip`` mode, stop after this many skipped steps in a row.
        check_checkpoints: refuse to write a checkpoint whose weights or optimizer state are
            not finite (e.g. a model whose ``train_step`` bypasses ``parse_losses``).
    """
    priority = 'VERY_HIGH'  # after_train_iter before CheckpointHook (VERY_LOW)

    def __init__(self, mode: str = 'stop', max_consecutive_skips: int = 10,
                 check_checkpoints: bool = True):
        if mode not in ('stop', 'skip'):
            raise ValueError(f"NonFiniteLossHook: mode must be 'stop' or 'skip', not {mode!r}")
        if max_consecutive_skips < 1:
            raise ValueError('NonFiniteLossHook: max_consecutive_skips must be >= 1, not '
                             f'{max_consecutive_skips}')
        self.mode = mode
        self.max_consecutive_skips = max_consecutive_skips
        self.check_checkpoints = check_checkpoints
        self.skipped = 0  # all skipped steps of this run
        self.consecutive = 0
        self._batch_idx = None
        self._checked = False  # parse_losses ran (and checked) in this iteration

    # ------------------------------------------------------------------ installing
    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse_losses = model.parse_losses
        train_step = runner.model.train_step

        def checked_parse_losses(losses):
            loss, log_vars = parse_losses(losses)
            self._checked = True
            found = _non_finite_terms(log_vars)
            if found is not None:
                raise _NonFiniteLoss(*found, loss=loss)
            return loss, log_vars

        def guarded_train_step(data, optim_wrapper):
            try:
                outputs = train_step(data, optim_wrapper)
            except _NonFiniteLoss as err:
                outputs = self._on_non_finite(runner, err, data)  # raises unless skipping
                if isinstance(runner.model, DistributedDataParallel) and err.loss is not None:
                    # DDP expects a backward after each training forward; run it, then
                    # throw the gradients away (every process skips this step together).
                    err.loss.backward()
                    optim_wrapper.zero_grad()
                return outputs
            self.consecutive = 0
            return outputs

        model.parse_losses = checked_parse_losses
        runner.model.train_step = guarded_train_step

    # ------------------------------------------------------------------- deciding
    def _where(self, runner) -> str:
        where = f'iteration {runner.iter + 1}'
        if self._batch_idx is not None and isinstance(runner.train_loop, EpochBasedTrainLoop):
            where += (f' (epoch {runner.epoch + 1}, batch {self._batch_idx + 1} of '
                      f'{len(runner.train_dataloader)})')
        return where

    def _last_checkpoint(self, runner) -> str:
        last = runner.message_hub.get_info('last_ckpt')
        if last and osp.isfile(last):
            return f'The last checkpoint written, {last}, is from before this step.'
        return 'No checkpoint had been written yet.'

    def _on_non_finite(self, runner, err: _NonFiniteLoss, data) -> dict:
        terms = _describe(err.terms)
        files = _image_files(data)
        batch = f' Images of this batch: {", ".join(files[:8])}.' if files else ''
        if self.mode == 'skip':
            self.skipped += 1
            self.consecutive += 1
            runner.logger.warning(f'{self._where(runner)}: the {terms} not finite; the step '
                                  f'is skipped ({self.consecutive} in a row, {self.skipped} in '
                                  f'all).{batch}')
            if self.consecutive < self.max_consecutive_skips:
                return {'skipped_steps': torch.tensor(float(self.skipped))}
            raise NonFiniteLossError(
                f'training stopped at {self._where(runner)}: {self.consecutive} steps in a row '
                f'had a non-finite loss (the last: {terms} not finite). '
                f'{self._last_checkpoint(runner)} '
                'Lower the learning rate or check the data.' + batch)
        raise NonFiniteLossError(
            f'training stopped at {self._where(runner)}: the {terms} not finite '
            f'(total loss {err.total}). The optimizer step was not taken. '
            f'{self._last_checkpoint(runner)} Lower the learning rate, check the data of this '
            "batch, or set default_hooks.nonfinite.mode='skip' to drop such steps." + batch)

    # ------------------------------------------------------------ hooks of the loop
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._batch_idx = batch_idx
        self._checked = False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # A model whose train_step does not call parse_losses is caught here, one step late
        # but before CheckpointHook (lower priority) can save its weights.
        if self._checked or not isinstance(outputs, dict) or 'loss' not in outputs:
            return
        if not isinstance(outputs['loss'], torch.Tensor):
            return
        found = _non_finite_terms(outputs)
        if found is not None:
            raise NonFiniteLossError(
                f'training stopped at {self._where(runner)}: the {_describe(found[0])} not '
                'finite (this model updates its weights outside parse_losses, so the step was '
                f'already taken). {self._last_checkpoint(runner)}')

    def after_train(self, runner) -> None:
        if self.skipped:
            runner.logger.warning(f'{self.skipped} training steps were skipped because their '
                                  'loss was not finite')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_checkpoints:
            return
        bad = [f'state_dict.{k}' for k, v in checkpoint.get('state_dict', {}).items()
               if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
        bad += _non_finite_optimizer_state(checkpoint.get('optimizer'))
        if bad:
            raise NonFiniteLossError(
                f'refusing to write a checkpoint at {self._where(runner)}: {len(bad)} tensors '
                f'hold NaN / Inf ({", ".join(bad[:5])}{" ..." if len(bad) > 5 else ""}). '
                f'{self._last_checkpoint(runner)}')


def _non_finite_optimizer_state(optimizer_state) -> List[str]:
    """Names (``optimizer.state.<param>.<key>``) of non-finite optimizer state tensors."""
    if not isinstance(optimizer_state, dict):
        return []
    states = optimizer_state.get('state')
    if not isinstance(states, dict):  # OptimWrapperDict: one optimizer state per name
        return [name for key, sub in optimizer_state.items()
                for name in _non_finite_optimizer_state(sub)]
    return [f'optimizer.state.{param}.{key}' for param, state in states.items()
            for key, value in state.items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not torch.isfinite(value).all()]

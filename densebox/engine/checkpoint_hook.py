"""mmengine's CheckpointHook with two fixes, registered under the same name in densebox's scope.

1. Its extra keyword arguments go to ``Runner.save_checkpoint`` at the first save, so a
   misspelt argument (``max_keep_ckpt=3``) used to fail only after a whole epoch. They are
   checked against ``Runner.save_checkpoint`` when the hook is built, before training.
2. With ``max_keep_ckpts``, mmengine deletes the oldest kept checkpoint *before* writing the
   new one: a save that fails or is killed leaves one good checkpoint fewer (none at all with
   ``max_keep_ckpts=1``). Here the old one is deleted only after the new one is on disk.
"""
import difflib
import inspect
from collections import deque

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.runner import Runner

from densebox.registry import HOOKS

# What CheckpointHook passes to Runner.save_checkpoint itself.
_PASSED_BY_THE_HOOK = {'self', 'out_dir', 'filename', 'file_client_args', 'save_optimizer',
                       'save_param_scheduler', 'meta', 'by_epoch', 'backend_args'}


def _check_extra_arguments(kwargs: dict) -> None:
    accepted = set(inspect.signature(Runner.save_checkpoint).parameters) - _PASSED_BY_THE_HOOK
    own = set(inspect.signature(MMEngineCheckpointHook.__init__).parameters) - {'self', 'kwargs'}
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(own | accepted), n=3)
            hint = f' Did you mean {" or ".join(repr(c) for c in close)}?' if close else ''
            raise TypeError(f'CheckpointHook got an unknown argument {key!r} '
                            f'(default_hooks.checkpoint.{key}).{hint} Its arguments are: '
                            f'{", ".join(sorted(own))}.')


@HOOKS.register_module(name='CheckpointHook')
class CheckpointHook(MMEngineCheckpointHook):
    """``mmengine.hooks.CheckpointHook``, checking its arguments when built and deleting
    old checkpoints only after the new one is written (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        own = set(inspect.signature(MMEngineCheckpointHook.__init__).parameters)
        _check_extra_arguments({k: v for k, v in kwargs.items() if k not in own})
        super().__init__(*args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.max_keep_ckpts > 0:
            self.keep_ckpt_ids = deque(self.keep_ckpt_ids)  # no maxlen: pruned by hand

    def _save_checkpoint_with_step(self, runner, step, meta):
        keep = self.max_keep_ckpts
        if keep <= 0:
            return super()._save_checkpoint_with_step(runner, step, meta)
        ids = list(self.keep_ckpt_ids)
        if not ids or ids[-1] != step:
            ids.append(step)
        stale, kept = ids[:-keep], ids[-keep:]
        # The checkpoint records the ids kept after this save, as mmengine's does.
        runner.message_hub.update_info('keep_ckpt_ids', kept)
        self.max_keep_ckpts = -1  # mmengine's save without its delete-first pruning
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.max_keep_ckpts = keep
        self.keep_ckpt_ids = deque(kept)
        if is_main_process():
            for old in stale:
                path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
                if self.file_backend.isfile(path):
                    self.file_backend.remove(path)
                elif self.file_backend.isdir(path):
                    self.file_backend.rmtree(path)

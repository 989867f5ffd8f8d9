"""Imported by the kill-and-resume test's training subprocesses (``custom_imports``):
``DENSEBOX_TEST_KILL=step:N`` SIGKILLs the process as iteration N starts,
``DENSEBOX_TEST_KILL=save:N`` SIGKILLs it half-way through writing the checkpoint of
iteration N (after half of the temporary file is on disk)."""
import os
import signal

from mmengine.hooks import Hook

import densebox.engine.checkpoint as checkpoint_module
from densebox.registry import HOOKS


def _kill_now():
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillAt(Hook):
    priority = 'LOWEST'

    def __init__(self):
        where, _, at = os.environ.get('DENSEBOX_TEST_KILL', '').partition(':')
        self.where, self.at = where, int(at or 0)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.where == 'step' and runner.iter + 1 == self.at:
            _kill_now()

    def before_save_checkpoint(self, runner, checkpoint):
        if self.where == 'save' and runner.iter + 1 == self.at:
            def write_half_then_die(f, data):
                f.write(bytes(data[:len(data) // 2]))
                f.flush()
                os.fsync(f.fileno())
                _kill_now()
            checkpoint_module._write_all = write_half_then_die

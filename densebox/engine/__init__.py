"""Runner-side pieces: safe checkpoint loading / atomic saving (installed on import), hooks,
training loops that resume exactly, distributed launch."""
from .checkpoint import (SAFE_GLOBALS, UnsafeCheckpointError, atomic_save_checkpoint,
                         load_weights, remove_stale_temp_files, safe_torch_load)
from .checkpoint_schemes import install_safe_checkpointing
from .checkpoint_hook import CheckpointHook
from .hooks import DrawPredictionsHook, TestProgressBarHook
from .loops import EpochBasedTrainLoop, IterBasedTrainLoop
from .nonfinite import NonFiniteLossError, NonFiniteLossHook

install_safe_checkpointing()

__all__ = ['SAFE_GLOBALS', 'UnsafeCheckpointError', 'atomic_save_checkpoint',
           'install_safe_checkpointing', 'load_weights', 'remove_stale_temp_files', 'safe_torch_load',
           'CheckpointHook', 'DrawPredictionsHook', 'EpochBasedTrainLoop', 'IterBasedTrainLoop',
           'NonFiniteLossError', 'NonFiniteLossHook', 'TestProgressBarHook']

"""Runner-side pieces: safe checkpoint loading / atomic saving (installed on import), hooks."""
from .checkpoint import (SAFE_GLOBALS, atomic_save_checkpoint, install_safe_checkpointing,
                         safe_torch_load)
from .hooks import DrawPredictionsHook, TestProgressBarHook

install_safe_checkpointing()

__all__ = ['SAFE_GLOBALS', 'atomic_save_checkpoint', 'install_safe_checkpointing',
           'safe_torch_load', 'DrawPredictionsHook', 'TestProgressBarHook']

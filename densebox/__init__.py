"""densebox: dense prediction (detection and semantic segmentation) on mmengine.

Imports are lazy so that ``import densebox`` stays cheap; the public API is
``densebox.init_model`` and ``densebox.inference``.
"""
from .version import __version__

__all__ = ['__version__', 'init_model', 'inference', 'set_default_model']


def __getattr__(name):
    if name in ('init_model', 'inference', 'set_default_model'):
        from . import apis
        return getattr(apis, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

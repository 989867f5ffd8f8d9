"""densebox: dense prediction (detection and semantic segmentation) on mmengine.

Imports are lazy so that ``import densebox`` stays cheap; the public API is
``densebox.init_model``, ``densebox.inference`` and ``densebox.set_default_model``
(with the result types ``DetResult`` / ``SegResult``), and ``densebox.zoo`` for published
weights.
"""
from .version import __version__

_API = ('init_model', 'inference', 'set_default_model', 'get_default_model', 'DetResult',
        'SegResult')
__all__ = ['__version__', *_API]


def __getattr__(name):
    if name in _API:
        from . import apis
        return getattr(apis, name)
    if name == 'zoo':
        import importlib
        return importlib.import_module('.zoo', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

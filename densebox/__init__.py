"""densebox: dense prediction (detection and semantic segmentation) on mmengine.

Imports are lazy so that ``import densebox`` stays cheap (no torch until it is needed); the
public API is ``densebox.init_model``, ``densebox.inference`` and
``densebox.set_default_model`` (with the result types ``DetResult`` / ``SegResult``), and
``densebox.zoo`` for published weights. ``dir(densebox)`` lists them.
"""
from .version import __version__

_API = ('init_model', 'inference', 'set_default_model', 'get_default_model', 'DetResult',
        'SegResult')
_MODULES = ('zoo',)
__all__ = ['__version__', *_API, *_MODULES]


def __getattr__(name):
    if name in _API:
        from . import apis
        return getattr(apis, name)
    if name in _MODULES:
        import importlib
        return importlib.import_module(f'.{name}', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(__all__))

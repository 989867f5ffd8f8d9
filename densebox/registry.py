"""densebox registries.

Each registry is a child of the mmengine root registry of the same kind, under the scope
``'densebox'``. Configs set ``default_scope = 'densebox'`` so that a ``type='SSDHead'`` is
looked up here first and in mmengine second (``type='SGD'`` and the Runner's own hooks,
loops and schedulers come from mmengine). ``locations`` lets the Runner import the modules
that register classes without the user importing them by hand.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='densebox', locations=['densebox.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='densebox',
                    locations=['densebox.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='densebox',
                         locations=['densebox.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='densebox',
                      locations=['densebox.datasets.transforms'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='densebox',
                   locations=['densebox.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, scope='densebox',
                     locations=['densebox.evaluation'])
TASK_UTILS = Registry('task util', parent=MMENGINE_TASK_UTILS, scope='densebox',
                      locations=['densebox.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='densebox', locations=['densebox.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='densebox', locations=['densebox.engine'])
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, scope='densebox',
                      locations=['densebox.engine'])
OPTIM_WRAPPERS = Registry('optim wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='densebox',
                          locations=['densebox.engine'])
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
                            scope='densebox', locations=['densebox.engine'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope='densebox',
                       locations=['densebox.visualization'])
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS, scope='densebox',
                       locations=['densebox.visualization'])


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every densebox module that registers classes, and make 'densebox' the default
    scope so that mmengine's own builders (e.g. ``BaseModel``'s data preprocessor) find them.

    The Runner does both by itself from ``default_scope`` in the config; call this when
    building models or datasets by hand.
    """
    import densebox.datasets  # noqa: F401
    import densebox.datasets.transforms  # noqa: F401
    import densebox.engine  # noqa: F401
    import densebox.evaluation  # noqa: F401
    import densebox.models  # noqa: F401
    import densebox.visualization  # noqa: F401
    if init_default_scope:
        from mmengine.registry import init_default_scope as _init
        _init('densebox')

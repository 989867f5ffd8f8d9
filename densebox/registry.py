"""densebox registries: one child of each mmengine root registry the Runner builds from.

Each registry is a child of the mmengine root registry of the same kind, under the scope
``'densebox'``. Configs set ``default_scope = 'densebox'`` so that a ``type='SSDHead'`` is
looked up here first and in mmengine second (``type='SGD'`` and the Runner's own hooks,
loops and schedulers come from mmengine). Because every kind the Runner builds has a child
here, mmengine never warns that it "failed to search registry with scope densebox".

``locations`` name the modules that register into each registry; mmengine imports them the
first time the registry is searched, so the Runner finds densebox's classes without the
user importing anything. (``WEIGHT_INITIALIZERS`` lists ``densebox.zoo``: building a
``Pretrained`` initialiser registers the ``zoo://`` checkpoint scheme first.)

This module is a leaf: it imports mmengine only. To import every densebox module by hand
(building models or datasets outside the Runner), call
:func:`densebox.setup_env.register_all_modules`.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry


def _child(name: str, parent: Registry, *locations: str) -> Registry:
    return Registry(name, parent=parent, scope='densebox', locations=list(locations))


RUNNERS = _child('runner', MMENGINE_RUNNERS)
RUNNER_CONSTRUCTORS = _child('runner constructor', MMENGINE_RUNNER_CONSTRUCTORS)
LOOPS = _child('loop', MMENGINE_LOOPS, 'densebox.engine')
HOOKS = _child('hook', MMENGINE_HOOKS, 'densebox.engine')
STRATEGIES = _child('strategy', MMENGINE_STRATEGIES)
DATASETS = _child('dataset', MMENGINE_DATASETS, 'densebox.datasets')
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, 'densebox.datasets')
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, 'densebox.datasets.transforms')
MODELS = _child('model', MMENGINE_MODELS, 'densebox.models')
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child('weight initializer', MMENGINE_WEIGHT_INITIALIZERS, 'densebox.zoo')
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, 'densebox.engine')
OPTIM_WRAPPERS = _child('optim wrapper', MMENGINE_OPTIM_WRAPPERS, 'densebox.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, 'densebox.engine')
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS, 'densebox.engine')
METRICS = _child('metric', MMENGINE_METRICS, 'densebox.evaluation')
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, 'densebox.evaluation')
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, 'densebox.models')
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, 'densebox.visualization')
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, 'densebox.visualization')
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS)
INFERENCERS = _child('inferencer', MMENGINE_INFERENCERS)
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS)

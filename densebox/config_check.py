"""Config mistakes caught before training starts, each in one sentence naming the key.

- :func:`check_cfg_options`: every ``--cfg-options`` key must exist in the config. An unknown
  key is an error listing close matches; ``+key=value`` adds a key on purpose. Changing a
  top-level variable of the config file (``max_epochs``, ``data_root``) is an error too: the
  file has already used its value (``train_cfg.max_epochs``), so the change would do nothing.
- :func:`check_config`: every ``type`` the Runner will build (hooks, data sets, transforms,
  samplers, evaluators, the model, optimizer, schedulers, loops, visualizer) must be
  registered, and its arguments must be ones it accepts. mmengine builds some of them late:
  the test data set and evaluator only after training, CheckpointHook's extra arguments at
  its first save.
- :func:`check_num_classes`: every head's ``num_classes`` equals its data sets' class count.
"""
import difflib
import inspect
from typing import Iterable, Iterator, List, Optional, Tuple

from mmengine.config import Config

# Top-level keys the Runner (Runner.from_cfg and what it reads from cfg) and densebox use.
RUNNER_KEYS = frozenset({
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg',
    'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
    'val_evaluator', 'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor',
    'load_from', 'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer',
    'default_scope', 'randomness', 'experiment_name', 'model_wrapper_cfg',
    'find_unused_parameters', 'sync_bn', 'compile', 'activation_checkpointing',
    'efficient_conv_bn_eval', 'gpu_ids', 'custom_imports', 'strategy', 'vis_backends',
    # read by densebox's tools rather than the Runner
    'tta_model', 'tta_pipeline', 'paper_model_size', 'quickstart'})


class ConfigError(ValueError):
    """A config key or value that would be ignored or fail later."""


# ------------------------------------------------------------------- --cfg-options
def _paths(node, prefix: str = '') -> Iterator[Tuple[str, object]]:
    """Every dotted key path of a config (list items by index) with its value."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return
    for key, value in items:
        path = f'{prefix}{key}'
        yield path, value
        yield from _paths(value, path + '.')


def _lookup(cfg, path: str) -> bool:
    node = cfg
    for part in path.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _suggestions(cfg, key: str, limit: int = 3) -> List[str]:
    """Paths that end with the same name first, then the closest spellings."""
    paths = [p for p, _ in _paths(cfg) if not p.split('.')[-1].startswith('_')]
    last = key.split('.')[-1]
    same_name = [p for p in paths if p.split('.')[-1] == last and p != key]
    close = difflib.get_close_matches(key, paths, n=limit, cutoff=0.6)
    close += [p for p in paths if difflib.SequenceMatcher(None, last, p.split('.')[-1]).ratio()
              >= 0.8 and p not in close]
    return list(dict.fromkeys(same_name + close))[:limit]


def check_cfg_options(cfg: Config, options: Optional[dict], source: str = 'the config'
                      ) -> Optional[dict]:
    """Validate ``--cfg-options`` against ``cfg``; return them with the ``+`` marks removed.

    Raises:
        ConfigError: for a key that is not in the config (``+key=`` adds one on purpose), or
            that names a top-level variable of the config file.
    """
    if not options:
        return options
    if isinstance(cfg, Config):
        cfg = cfg.to_dict()
    checked = {}
    for key, value in options.items():
        if key.startswith('+'):
            checked[key[1:]] = value
            continue
        top = key.split('.')[0]
        runner_addition = top in RUNNER_KEYS and top not in cfg  # e.g. load_from, compile
        if not _lookup(cfg, key) and not runner_addition and not _is_argument_of_parent(cfg, key):
            hint = _suggestions(cfg, key)
            raise ConfigError(
                f'--cfg-options {key}: there is no {key!r} in {source}'
                + (f'; close matches: {", ".join(hint)}' if hint else '')
                + f'. To add a new key on purpose, write +{key}=...')
        if top not in RUNNER_KEYS:
            users = [p for p, v in _paths(cfg) if '.' in p and p.split('.')[-1] == top]
            raise ConfigError(
                f'--cfg-options {key}: {top!r} is a variable of {source}, which the file has '
                'already used where it needs it; changing it now would change nothing'
                + (f'. Set what it fed instead: {", ".join(users[:5])}' if users else '')
                + f' (or +{key}=... to set it anyway)')
        checked[key] = value
    return checked


def _is_argument_of_parent(cfg, key: str) -> bool:
    """``optim_wrapper.optimizer.nesterov``: not in the config, but an argument of the class
    its parent dict builds (then setting it is fine)."""
    parent, _, name = key.rpartition('.')
    for path, node, registry in _slots(cfg):
        if path == parent:
            kind = node['type']
            obj = kind if not isinstance(kind, str) else registry.get(kind)
            accepted = _accepted_arguments(obj) if obj is not None else None
            return accepted is not None and name in accepted | _builder_keys(registry)
    return False


# -------------------------------------------------------------------- eager checks
def _registries():
    from densebox import registry as r
    return r


def _slots(cfg) -> Iterator[Tuple[str, dict, object]]:
    """(key path, config dict, registry) of everything with a ``type`` the Runner builds."""
    r = _registries()

    def each(node, path, registry):
        if isinstance(node, dict) and 'type' in node:
            yield path, node, registry
        elif isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                yield from each(item, f'{path}.{i}', registry)

    def dataset(node, path):
        if not isinstance(node, dict):
            return
        yield from each(node, path, r.DATASETS)
        yield from each(node.get('pipeline'), f'{path}.pipeline', r.TRANSFORMS)
        yield from dataset(node.get('dataset'), f'{path}.dataset')
        for i, sub in enumerate(node.get('datasets') or ()):
            yield from dataset(sub, f'{path}.datasets.{i}')

    yield from each(cfg.get('model'), 'model', r.MODELS)
    for name, hook in (cfg.get('default_hooks') or {}).items():
        yield from each(hook, f'default_hooks.{name}', r.HOOKS)
    yield from each(cfg.get('custom_hooks'), 'custom_hooks', r.HOOKS)
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if isinstance(loader, dict):
            yield from dataset(loader.get('dataset'), f'{split}_dataloader.dataset')
            for key in ('sampler', 'batch_sampler'):
                yield from each(loader.get(key), f'{split}_dataloader.{key}', r.DATA_SAMPLERS)
        loop = cfg.get(f'{split}_cfg')
        yield from each(loop, f'{split}_cfg', r.LOOPS)
    for split in ('val', 'test'):
        evaluator = cfg.get(f'{split}_evaluator')
        if isinstance(evaluator, dict) and 'metrics' in evaluator:
            yield from each(evaluator, f'{split}_evaluator', r.EVALUATOR)
            yield from each(evaluator['metrics'], f'{split}_evaluator.metrics', r.METRICS)
        else:
            yield from each(evaluator, f'{split}_evaluator', r.METRICS)
    optim = cfg.get('optim_wrapper')
    yield from each(optim, 'optim_wrapper', r.OPTIM_WRAPPERS)
    if isinstance(optim, dict):
        yield from each(optim.get('optimizer'), 'optim_wrapper.optimizer', r.OPTIMIZERS)
    yield from each(cfg.get('param_scheduler'), 'param_scheduler', r.PARAM_SCHEDULERS)
    visualizer = cfg.get('visualizer')
    yield from each(visualizer, 'visualizer', r.VISUALIZERS)
    if isinstance(visualizer, dict):
        yield from each(visualizer.get('vis_backends'), 'visualizer.vis_backends', r.VISBACKENDS)


def _builder_keys(registry) -> set:
    """Keys mmengine's builders take out of a config before calling the class."""
    r = _registries()
    if registry is r.PARAM_SCHEDULERS:
        return {'convert_to_iter_based'}
    if registry is r.OPTIM_WRAPPERS:
        return {'optimizer', 'constructor', 'paramwise_cfg'}
    return set()


def _registered_names(registry) -> List[str]:
    names = []
    while registry is not None:
        names += list(registry.module_dict)
        registry = registry.parent
    return names


def _accepted_arguments(obj) -> Optional[set]:
    """Keyword arguments ``obj`` accepts; ``None`` when it takes ``**kwargs`` it does not
    forward to a base class (then nothing can be said). A class's ``**kwargs`` are taken to
    go to the base classes' ``__init__`` along the MRO, as in mmengine / densebox code."""
    if not inspect.isclass(obj):
        params = inspect.signature(obj).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params}
    accepted = set()
    for klass in obj.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        if klass is object:  # every __init__ so far took **kwargs
            return None
        params = list(inspect.signature(init).parameters.values())[1:]
        accepted |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return accepted
    return None


def check_config(cfg: Config, keys: Optional[Iterable[str]] = None) -> None:
    """Check every registered ``type`` and its arguments (see the module docstring).

    Args:
        cfg: a loaded config.
        keys: only slots under these top-level keys (e.g. the test ones for ``test``).

    Raises:
        ConfigError: naming the key path, with close matches.
    """
    from densebox import registry
    for name in dir(registry):  # every densebox class registered (mmengine imports them)
        if isinstance(getattr(registry, name), registry.Registry):
            getattr(registry, name).import_from_location()
    keys = None if keys is None else set(keys)
    for path, node, registry in _slots(cfg):
        if keys is not None and path.split('.')[0] not in keys:
            continue
        kind = node['type']
        obj = kind if not isinstance(kind, str) else registry.get(kind)
        if obj is None:
            close = difflib.get_close_matches(kind, _registered_names(registry), n=3)
            raise ConfigError(
                f'{path}.type: {kind!r} is not a registered {registry.name}'
                + (f'; did you mean {" or ".join(map(repr, close))}?' if close else '')
                + ' (a class of your own must be imported: custom_imports in the config)')
        accepted = _accepted_arguments(obj)
        if accepted is None:
            continue
        accepted |= _builder_keys(registry)
        for key in node:
            if key in ('type', '_scope_') or key in accepted:
                continue
            close = difflib.get_close_matches(key, sorted(accepted), n=3)
            name = getattr(obj, '__name__', str(obj))
            raise ConfigError(
                f'{path}.{key}: {name} has no argument {key!r}'
                + (f'; did you mean {" or ".join(map(repr, close))}?' if close else '')
                + f' Its arguments: {", ".join(sorted(a for a in accepted if a != "runner"))}.')
    check_num_classes(cfg, keys)


# ----------------------------------------------------------------- class counts
_HEADS = ('bbox_head', 'decode_head', 'auxiliary_head')


def _head_class_counts(model) -> Iterator[Tuple[str, int]]:
    """(key path, num_classes) of every head of a model config."""
    if not isinstance(model, dict):
        return
    for key in _HEADS:
        heads = model.get(key)
        for i, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            if isinstance(head, dict) and isinstance(head.get('num_classes'), int):
                path = f'model.{key}' + (f'.{i}' if isinstance(heads, (list, tuple)) else '')
                yield path, head['num_classes']


def _dataset_classes(node) -> Optional[Tuple[int, str]]:
    """(number of classes, where the list is set) of a data set config; wrappers
    (``dataset=``, ``datasets=[...]``) answer with what they wrap. None when unknown."""
    if not isinstance(node, dict):
        return None
    meta = node.get('metainfo')
    if isinstance(meta, dict) and meta.get('classes') is not None:
        return len(meta['classes']), 'its metainfo.classes'
    if isinstance(node.get('dataset'), dict):
        return _dataset_classes(node['dataset'])
    if node.get('datasets'):
        return _dataset_classes(node['datasets'][0])
    kind = node.get('type')
    obj = _registries().DATASETS.get(kind) if isinstance(kind, str) else kind
    classes = (getattr(obj, 'METAINFO', None) or {}).get('classes')
    if classes is None:
        return None
    return len(classes), f'{getattr(obj, "__name__", kind)}.METAINFO'


def check_num_classes(cfg, keys: Optional[Iterable[str]] = None) -> None:
    """Every head's ``num_classes`` must equal the class count of every data set it is
    trained or evaluated on (a head of 20 classes on 80-class COCO trains on wrong labels or
    fails deep inside the loss).

    Raises:
        ConfigError: naming the head's key, the data set's key and both counts.
    """
    if isinstance(cfg, Config):
        cfg = cfg.to_dict()
    heads = list(_head_class_counts(cfg.get('model')))
    for split in ('train', 'val', 'test'):
        key = f'{split}_dataloader'
        if keys is not None and key not in keys:
            continue
        loader = cfg.get(key)
        found = _dataset_classes(loader.get('dataset')) if isinstance(loader, dict) else None
        if found is None:
            continue
        count, source = found
        for path, num_classes in heads:
            if num_classes != count:
                raise ConfigError(
                    f'{path}.num_classes is {num_classes}, but {key}.dataset has {count} '
                    f'classes ({source}). Set {path}.num_classes={count}, or the data '
                    'set\'s metainfo=dict(classes=(...)) to the classes the head predicts.')

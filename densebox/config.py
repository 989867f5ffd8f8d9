"""Finding and loading configs, the same way for every tool and the API.

``densebox train|test|infer|quickstart``, ``tools/*.py``, :func:`densebox.init_model` and the
zoo all find a config with :func:`resolve_config`, so a name that works for one works for
all, from any folder:

1. a path as given (relative to the current folder, or absolute);
2. a path relative to the densebox checkout (``configs/ssd300_voc.py`` run from elsewhere);
3. a model-zoo name (``densebox zoo list``): its config, with the overrides the zoo
   weights need (``cfg_options`` of the zoo entry); a zoo name wins over a recipe of the
   same name (``ssd300_coco_torchvision`` is both) because it also brings the weights;
4. a bare recipe name (``ssd300_voc`` or ``ssd300_voc.py``), looked up in the checkout's
   ``configs/``.

:func:`load_config` loads what it found (or a Config / dict) and merges ``cfg_options``
after :func:`densebox.config_check.check_cfg_options` has checked their keys;
:func:`dataset_meta_from_config` reads the class names and palette a config's test data set
declares, without reading any data.
"""
import copy
import os
import os.path as osp
import warnings
from typing import List, Optional, Tuple, Union

from mmengine.config import Config

__all__ = ['REPO_ROOT', 'CONFIG_DIR', 'find_config_file', 'config_names', 'resolve_config',
           'load_config', 'dataset_meta_from_config']

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # the checkout holding densebox/
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')


def _candidates(config: str, recipe_names: bool = True) -> List[str]:
    """Where :func:`find_config_file` looks for ``config``, in order."""
    config = osp.expanduser(str(config))
    found = [config]
    if not osp.isabs(config):
        found.append(osp.join(REPO_ROOT, config))
        if recipe_names:
            name = config if config.endswith('.py') else config + '.py'
            found.append(osp.join(CONFIG_DIR, name))
    return list(dict.fromkeys(found))


def find_config_file(config: str, recipe_names: bool = True) -> Optional[str]:
    """The config file ``config`` names: a path (steps 1-2 of the module docstring) or,
    with ``recipe_names``, a recipe name (step 4); None when there is none."""
    for path in _candidates(config, recipe_names):
        if osp.isfile(path):
            return path
    return None


def config_names() -> List[str]:
    """The recipe names in the checkout's ``configs/`` (without ``.py``), sorted."""
    if not osp.isdir(CONFIG_DIR):
        return []
    return sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith('.py'))


def resolve_config(config: str) -> Tuple[str, dict, Optional[str]]:
    """Find the config file that ``config`` names.

    Args:
        config: a path, a checkout-relative path, a recipe name or a zoo name.

    Returns:
        ``(path, cfg_options, zoo_name)``: the config file, the overrides a zoo entry needs
        (``{}`` otherwise) and the zoo name (None when ``config`` is not one).

    Raises:
        FileNotFoundError: nothing matches; the message lists where it looked, the recipe
        names and the zoo names.
    """
    path = find_config_file(config, recipe_names=False)
    if path is not None:
        return path, {}, None
    from densebox.zoo.manifest import MANIFEST
    if str(config) in MANIFEST:
        entry = copy.deepcopy(MANIFEST[str(config)])
        if not entry.get('config'):
            raise ValueError(f'zoo entry {config!r} holds {entry.get("kind")} weights and has no '
                             'config; use it through a config that initialises from it')
        zoo_path = find_config_file(entry['config'])
        if zoo_path is None:
            raise FileNotFoundError(f'zoo entry {config!r} names the config {entry["config"]}, '
                                    f'which is not in {REPO_ROOT}')
        return zoo_path, dict(entry.get('cfg_options') or {}), str(config)
    path = find_config_file(config)
    if path is not None:
        return path, {}, None
    looked = ', '.join(_candidates(config))
    raise FileNotFoundError(
        f'{str(config)!r} is neither a config file nor a model-zoo name (looked for '
        f'{looked}). Give a config file, a recipe '
        f'name ({", ".join(config_names()) or "none found"}) or a model-zoo name '
        f'({", ".join(sorted(n for n, e in MANIFEST.items() if e.get("kind") == "model"))}; '
        'see `densebox zoo list`).')


def load_config(config: Union[str, os.PathLike, Config, dict],
                cfg_options: Optional[dict] = None) -> Config:
    """A :class:`~mmengine.config.Config` from what :func:`resolve_config` takes (a path, a
    checkout path, a recipe or zoo name: the zoo entry's overrides merged in), or a Config
    or plain dict (copied).

    ``cfg_options`` (``{'model.bbox_head.num_classes': 3}``) are checked by
    :func:`densebox.config_check.check_cfg_options` (a key not in the config is an error
    listing close matches; ``'+key'`` adds one on purpose) and merged in.
    """
    from densebox.config_check import check_cfg_options
    source = 'the config'
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, dict):
        cfg = Config(copy.deepcopy(config))
    elif isinstance(config, (str, os.PathLike)):
        path, zoo_options, _ = resolve_config(str(config))
        cfg = Config.fromfile(path)
        if zoo_options:
            cfg.merge_from_dict(zoo_options)
        source = path
    else:
        raise TypeError(f'config must be a path, a Config or a dict, got {type(config).__name__}')
    cfg_options = check_cfg_options(cfg, cfg_options, source)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'config {getattr(cfg, "filename", None) or config} has no "model" entry')
    return cfg


def _test_dataset_cfg(cfg: Config) -> Optional[dict]:
    """The innermost dataset config of the test (or val) dataloader, wrappers unwrapped."""
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        if loader and loader.get('dataset') is not None:
            ds = loader['dataset']
            while isinstance(ds, dict) and 'dataset' in ds and isinstance(ds['dataset'], dict):
                ds = ds['dataset']  # RepeatDataset / ClassBalancedDataset wrappers
            if isinstance(ds, dict) and 'datasets' in ds and ds['datasets']:
                ds = ds['datasets'][0]  # ConcatDataset: its parts share the metainfo
            return ds
    return None


def _num_classes(model_cfg: dict) -> Optional[int]:
    for head in ('bbox_head', 'decode_head'):
        if isinstance(model_cfg.get(head), dict) and 'num_classes' in model_cfg[head]:
            return int(model_cfg[head]['num_classes'])
    return None


def dataset_meta_from_config(cfg: Config) -> dict:
    """``{'classes': tuple, 'palette': list}`` of the config's test data set.

    The data set class's ``METAINFO`` updated by the config's ``metainfo`` (no files are
    read). Falls back to ``class_0`` ... names when the config names no data set.
    """
    from densebox.registry import DATASETS
    from densebox.visualization.palette import get_palette
    meta = {}
    ds = _test_dataset_cfg(cfg)
    if ds is not None:
        ds_type = ds.get('type')
        ds_cls = DATASETS.get(ds_type) if isinstance(ds_type, str) else ds_type
        user_meta = copy.deepcopy(ds.get('metainfo')) or None
        if ds_cls is not None and hasattr(ds_cls, '_load_metainfo'):
            meta = dict(ds_cls._load_metainfo(user_meta))
        elif user_meta:
            meta = dict(user_meta)
    classes = tuple(meta.get('classes') or ())
    named = cfg.model.get('output_classes') or cfg.model.get('classes')
    if named:  # open-vocabulary models (ReCo) name what they predict
        classes = tuple(named)
    num_classes = _num_classes(cfg.model)
    if not classes:
        if num_classes is None:
            raise KeyError('cannot tell the class names: the config names no data set with '
                           'metainfo and the model no num_classes')
        classes = tuple(f'class_{i}' for i in range(num_classes))
    elif num_classes is not None and len(classes) != num_classes:
        warnings.warn(f'the config\'s data set has {len(classes)} classes but the model '
                      f'predicts {num_classes}; class names may be wrong')
    meta['classes'] = classes
    palette = meta.get('palette')
    if palette is None or len(palette) < len(classes):
        meta['palette'] = [tuple(int(v) for v in c) for c in get_palette(len(classes))]
    return meta

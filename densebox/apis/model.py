"""Building a ready-to-predict model from a config (or a zoo name) and a checkpoint.

``init_model`` is the one way the API, the ``infer`` command and the ONNX exporter get a
model: it builds ``cfg.model`` through densebox's registry, loads the weights with
:func:`densebox.engine.safe_torch_load` (``weights_only=True``: a downloaded file cannot
run code), attaches the class names and palette (``model.dataset_meta``) and the config
(``model.cfg``), moves the model to the device and switches it to eval mode; on the CPU its
3x3 convs choose their fastest kernel per input size and its 2x2 max-pools take a faster
path (:func:`densebox.ops.speed_up_cpu_inference`).
"""
import copy
import os
import os.path as osp
import warnings
from typing import Optional, Union

import torch
from mmengine.config import Config
from torch import nn

__all__ = ['init_model', 'resolve_device', 'load_config', 'dataset_meta_from_config',
           'load_weights']


def resolve_device(device: Union[str, torch.device, None] = 'auto') -> torch.device:
    """``'auto'`` (or None) -> ``cuda`` when available, else ``cpu``; other values as given.

    Raises a ``RuntimeError`` when CUDA is asked for on a machine without it.
    """
    if device is None or (isinstance(device, str) and device == 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'device {str(device)!r} was asked for but CUDA is not available '
                           "on this machine; use device='cpu' or 'auto'")
    return device


def _find_repo_config(path: str) -> Optional[str]:
    """A config path as given, relative to the densebox checkout (``configs/...``) or a
    recipe name (:func:`densebox.tools_common.find_config_file`)."""
    from densebox.tools_common import find_config_file
    return find_config_file(path)


def load_config(config: Union[str, os.PathLike, Config, dict],
                cfg_options: Optional[dict] = None) -> Config:
    """A :class:`~mmengine.config.Config` from a file path, a Config or a plain dict.

    ``cfg_options`` (``{'model.bbox_head.num_classes': 3}``) are merged in.
    """
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, dict):
        cfg = Config(copy.deepcopy(config))
    elif isinstance(config, (str, os.PathLike)):
        path = _find_repo_config(str(config))
        if path is None:
            raise FileNotFoundError(f'config file {config} does not exist')
        cfg = Config.fromfile(path)
    else:
        raise TypeError(f'config must be a path, a Config or a dict, got {type(config).__name__}')
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
    from densebox.visualization import get_palette
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


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, checkpoint: Union[str, os.PathLike, dict],
                 strict: bool = True) -> dict:
    """Load a densebox / mmengine checkpoint (file or loaded dict) into ``model``.

    Accepts ``{'state_dict': ..., 'meta': ...}`` (what training writes) or a bare state
    dict; a ``module.`` prefix (DataParallel) is removed. Returns the checkpoint's ``meta``
    (``{}`` when it has none). A mismatch raises a ``RuntimeError`` naming the file and the
    first missing / unexpected keys.
    """
    from densebox.engine.checkpoint import safe_torch_load
    name = str(checkpoint) if not isinstance(checkpoint, dict) else 'the checkpoint'
    if isinstance(checkpoint, dict):
        ckpt = checkpoint
    else:
        if not osp.isfile(str(checkpoint)):
            raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
        ckpt = safe_torch_load(str(checkpoint), map_location='cpu')
    if not isinstance(ckpt, dict):
        raise RuntimeError(f'{name} holds a {type(ckpt).__name__}, not a state dict')
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RuntimeError(f'{name}: "state_dict" is not a mapping of names to tensors')
    state = _strip_prefix(dict(state), 'module.')
    result = model.load_state_dict(state, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        def head(keys):
            return ', '.join(keys[:5]) + (f' ... ({len(keys)} in all)' if len(keys) > 5 else '')
        parts = []
        if result.missing_keys:
            parts.append(f'missing keys: {head(result.missing_keys)}')
        if result.unexpected_keys:
            parts.append(f'unexpected keys: {head(result.unexpected_keys)}')
        raise RuntimeError(f'{name} does not fit the model built from the config ('
                           + '; '.join(parts) + '). Is it the checkpoint of this config, or '
                           'one that needs a converter (densebox.converters)?')
    meta = ckpt.get('meta') if 'state_dict' in ckpt else None
    return dict(meta) if isinstance(meta, dict) else {}


def init_model(config: Union[str, os.PathLike, Config, dict],
               checkpoint: Optional[Union[str, os.PathLike]] = None,
               device: Union[str, torch.device] = 'auto',
               cfg_options: Optional[dict] = None,
               download: Optional[bool] = None,
               allow_unverified: bool = False,
               cpu_fast_paths: bool = True,
               backend: str = 'torch') -> nn.Module:
    """Build a model for inference.

    Args:
        config: a config file (``'configs/ssd300_coco.py'``; looked up in the densebox
            checkout too), a :class:`Config` / dict, or a model-zoo name
            (``densebox.zoo.list_models()``).
        checkpoint: weights to load. For a zoo name, None means the zoo's converted
            checkpoint (downloaded only if allowed, see :func:`densebox.zoo.get_checkpoint`).
            For a config, None leaves the weights random (with a warning).
        device: ``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda:1'`` ...
        cfg_options: config overrides, e.g. ``{'model.test_cfg.score_thr': 0.3}``.
        download: for zoo names, whether missing weights may be downloaded (None: the
            ``DENSEBOX_ALLOW_DOWNLOAD`` environment variable decides).
        allow_unverified: for zoo names, accept published weights whose full SHA-256 the
            manifest does not record (the hash prefix in their file name is still checked).
        cpu_fast_paths: on the CPU, :func:`densebox.ops.speed_up_cpu_inference`: each 3x3
            conv picks the faster of ATen's and NNPACK's kernel per input size (the first
            call with a new image size is slower; ``DENSEBOX_CPU_CONV=aten`` turns this part
            off too) and 2x2 max-pools run as strided maxima. Weights and the state dict
            are not touched.
        backend: what runs the network in :func:`densebox.inference`: ``'torch'`` (the
            eager model), ``'onnxruntime'`` / ``'openvino'`` (its ONNX export, exported and
            compiled on first use for each input size; CPU only) or ``'auto'`` (on the
            first batch, times torch and the installed runtimes and keeps the fastest;
            torch on a GPU). Results are the same objects, equal up to float rounding
            (:mod:`densebox.deploy.runtime`).

    Returns:
        The model in eval mode on ``device``, with ``model.cfg`` (the Config) and
        ``model.dataset_meta`` (``{'classes': tuple, 'palette': list of RGB}``: from the
        checkpoint's ``meta.dataset_meta`` when present, else from the config's data set).
        For the ONNX backends: a :class:`densebox.deploy.OnnxDetector` /
        :class:`~densebox.deploy.OnnxSegmentor` / :class:`~densebox.deploy.AutoBackend`
        with the same ``cfg``, ``dataset_meta`` and ``test_step``.
    """
    from densebox.deploy.runtime import BACKENDS
    if backend not in BACKENDS:
        raise ValueError(f'init_model: backend must be one of {BACKENDS}, got {backend!r}')
    from densebox.registry import MODELS, register_all_modules
    register_all_modules()
    zoo_name = None
    if isinstance(config, (str, os.PathLike)):
        from densebox.tools_common import resolve_config
        config, _, zoo_name = resolve_config(str(config))  # zoo names and recipe names too
    if zoo_name is not None:
        from densebox import zoo
        zoo_entry = zoo.get_entry(zoo_name)
        if zoo_entry.get('kind', 'model') != 'model':
            raise ValueError(f'zoo entry {zoo_name!r} holds {zoo_entry["kind"]} weights, not a '
                             'whole model; use densebox.zoo.get_checkpoint() and a config '
                             'that initialises from it')
        options = dict(zoo_entry.get('cfg_options') or {})
        options.update(cfg_options or {})
        cfg = load_config(config, options)
        if checkpoint is None:
            checkpoint = zoo.get_checkpoint(zoo_name, download=download,
                                            allow_unverified=allow_unverified)
    else:
        cfg = load_config(config, cfg_options)

    model_cfg = copy.deepcopy(cfg.model)
    model = MODELS.build(model_cfg)
    meta = {}
    if checkpoint is not None:
        meta = load_weights(model, checkpoint)
    elif not getattr(model, 'training_free', False):  # ReCo needs no trained weights
        warnings.warn('init_model: no checkpoint given, the model has random weights')
    dataset_meta = meta.get('dataset_meta') if isinstance(meta.get('dataset_meta'), dict) else None
    config_meta = dataset_meta_from_config(cfg)
    if dataset_meta and dataset_meta.get('classes'):
        dataset_meta = dict(dataset_meta)
        dataset_meta['classes'] = tuple(dataset_meta['classes'])
        if not dataset_meta.get('palette') or len(dataset_meta['palette']) < len(dataset_meta['classes']):
            dataset_meta['palette'] = (config_meta['palette']
                                       if len(config_meta['palette']) >= len(dataset_meta['classes'])
                                       else None)
            if dataset_meta['palette'] is None:
                from densebox.visualization import get_palette
                dataset_meta['palette'] = [tuple(int(v) for v in c)
                                           for c in get_palette(len(dataset_meta['classes']))]
    else:
        dataset_meta = config_meta
    model.dataset_meta = dataset_meta
    model.cfg = cfg
    device = resolve_device(device)
    model.to(device)
    model.eval()
    if cpu_fast_paths and device.type == 'cpu':
        from densebox.ops import speed_up_cpu_inference
        speed_up_cpu_inference(model)
    if backend != 'torch':
        from densebox.deploy.runtime import wrap_backend
        return wrap_backend(model, backend, device)
    return model

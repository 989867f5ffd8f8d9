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

from densebox.config import dataset_meta_from_config, load_config, resolve_config
from densebox.engine.checkpoint import load_weights

__all__ = ['init_model', 'resolve_device']


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
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    zoo_name = None
    if isinstance(config, (str, os.PathLike)):
        _, _, zoo_name = resolve_config(str(config))  # zoo names and recipe names too
    if zoo_name is not None and checkpoint is None:  # the zoo's own converted weights
        from densebox.zoo.hub import get_checkpoint
        checkpoint = get_checkpoint(zoo_name, download=download,
                                    allow_unverified=allow_unverified)
    cfg = load_config(config, cfg_options)  # a zoo entry's overrides merged in

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

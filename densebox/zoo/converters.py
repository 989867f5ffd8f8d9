"""Converter names used by the zoo manifest -> functions.

A converter is called as ``fn(checkpoint, cfg, **converter_args)`` with the loaded source
file (a dict) and the densebox Config of the entry (None for backbone weights). It returns
a densebox state dict, or ``{'state_dict': ..., 'meta': {...}}``.

Converters are named here as ``'module:function'`` and imported only when used: the zoo
sits below the models and converters in densebox's layers (models fetch their weights
through it), so it names them instead of importing them.
"""
import importlib
from typing import Callable, Dict

__all__ = ['CONVERTERS', 'get_converter']


def _densebox(checkpoint: dict, cfg=None):
    """Weights already in densebox's format (e.g. densebox's own releases)."""
    return checkpoint


def _torchvision_classifier_trunk(checkpoint: dict, cfg=None):
    """A torchvision classifier's state dict without its classifier (``fc.*``): the keys
    of backbones that keep torchvision's module names (TorchvisionResNet)."""
    state = checkpoint.get('state_dict', checkpoint)
    return {k: v for k, v in state.items() if not k.startswith('fc.')}


CONVERTERS: Dict[str, object] = {
    'densebox': _densebox,
    'mmdet_ssd': 'densebox.converters.mmdet_ssd:convert_mmdet_ssd_checkpoint',
    'torchvision_ssd300': 'densebox.converters.torchvision_ssd:convert_torchvision_ssd300_checkpoint',
    'clip_state_dict': 'densebox.models.backbones.clip:convert_clip_checkpoint',
    'torchvision_classifier_trunk': _torchvision_classifier_trunk,
    'denseclip_official': 'densebox.converters.denseclip:convert_denseclip_checkpoint',
    'torchvision_backbone':
        'densebox.converters.torchvision_seg:convert_torchvision_backbone_checkpoint',
    'vgg16_reducedfc': 'densebox.converters.vgg16_reducedfc:convert_vgg16_reducedfc_checkpoint',
    'ffnet_imagenet': 'densebox.converters.ffnet:convert_ffnet_imagenet_checkpoint',
    'iformer_official': 'densebox.converters.iformer:convert_iformer_checkpoint',
    'sgformer_official': 'densebox.converters.sgformer:convert_sgformer_checkpoint',
}


def get_converter(name: str) -> Callable:
    """The converter function registered as ``name``."""
    if name not in CONVERTERS:
        raise KeyError(f'unknown converter {name!r}; known: {sorted(CONVERTERS)}')
    target = CONVERTERS[name]
    if callable(target):
        return target
    module, func = target.split(':')
    return getattr(importlib.import_module(module), func)

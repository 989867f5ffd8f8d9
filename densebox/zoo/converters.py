"""Converter names used by the zoo manifest -> functions.

A converter is called as ``fn(checkpoint, cfg, **converter_args)`` with the loaded source
file (a dict) and the densebox Config of the entry (None for backbone weights). It returns
a densebox state dict, or ``{'state_dict': ..., 'meta': {...}}``.
"""
import importlib
from typing import Callable, Dict

__all__ = ['CONVERTERS', 'get_converter']


def _torchvision_ssd300(checkpoint: dict, cfg=None, **kwargs):
    from densebox.converters.torchvision_ssd import convert_torchvision_ssd300
    return convert_torchvision_ssd300(checkpoint.get('state_dict', checkpoint), **kwargs)


def _densebox(checkpoint: dict, cfg=None):
    """Weights already in densebox's format (e.g. densebox's own releases)."""
    return checkpoint


def _clip_state_dict(checkpoint: dict, cfg=None):
    """A CLIP checkpoint (OpenAI's or open_clip's) as open_clip's float32 state dict."""
    from densebox.models.backbones.clip import clip_state_dict_from
    return {k: v.float() if v.is_floating_point() else v
            for k, v in clip_state_dict_from(checkpoint, 'the CLIP checkpoint').items()}


def _torchvision_classifier_trunk(checkpoint: dict, cfg=None):
    """A torchvision classifier's state dict without its classifier (``fc.*``): the keys
    of backbones that keep torchvision's module names (TorchvisionResNet)."""
    state = checkpoint.get('state_dict', checkpoint)
    return {k: v for k, v in state.items() if not k.startswith('fc.')}


CONVERTERS: Dict[str, object] = {
    'densebox': _densebox,
    'mmdet_ssd': 'densebox.converters.mmdet_ssd:convert_mmdet_ssd_checkpoint',
    'torchvision_ssd300': _torchvision_ssd300,
    'clip_state_dict': _clip_state_dict,
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

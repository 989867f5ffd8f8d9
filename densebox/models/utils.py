"""Small building blocks shared by densebox's models.

- :class:`ConvBNAct`: conv -> norm -> activation, the unit every CNN here is made of.
- :func:`resize`: ``F.interpolate`` with the ``align_corners`` rule applied only where it
  means something, and a no-op when the size already matches.
- :func:`init_conv_bn`: the weight initialisation used by the backbones and heads.
- :func:`count_parameters` and :func:`analyze`: parameter and FLOP counts of a model or a
  model config (``tools/analyze_model.py`` is a thin command line around :func:`analyze`).
"""
import copy
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer


class ConvBNAct(nn.Module):
    """``Conv2d -> norm -> activation`` with ``padding = dilation * (kernel_size // 2)``.

    Args:
        in_channels, out_channels: channels of the (B, C_in, H, W) input and the
            (B, C_out, H', W') output.
        kernel_size, stride, dilation, groups: as in ``nn.Conv2d``.
        norm_cfg: mmcv norm config (``dict(type='BN')``, ``dict(type='SyncBN')``, ...),
            or None for no normalisation (the conv then gets a bias).
        act_cfg: mmcv activation config (``dict(type='ReLU')``, ``dict(type='ReLU6')``),
            or None for a linear unit.
    Submodules are named ``conv``, ``bn`` and ``act``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1, groups: int = 1,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        padding = dilation * (kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, dilation=dilation, groups=groups,
                              bias=norm_cfg is None)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1] if norm_cfg else None
        if act_cfg is not None:
            act_cfg = dict(act_cfg)
            if act_cfg['type'] in ('ReLU', 'ReLU6'):
                act_cfg.setdefault('inplace', True)
            self.act = build_activation_layer(act_cfg)
        else:
            self.act = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W')."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


def resize(x: torch.Tensor, size: Sequence[int], mode: str = 'bilinear',
           align_corners: bool = False) -> torch.Tensor:
    """Resize (B, C, h, w) to (B, C, *size); returns ``x`` itself when the size matches.

    ``align_corners`` is passed only to the modes that accept it (not to 'nearest').
    """
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if mode in ('nearest', 'area', 'nearest-exact'):
        return F.interpolate(x, size=size, mode=mode)
    return F.interpolate(x, size=size, mode=mode, align_corners=align_corners)


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convs, unit-gamma norms, N(0, 0.01) linears.

    Applied to every submodule of ``module``; biases are set to zero.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def freeze(module: nn.Module) -> None:
    """Put ``module`` in eval mode and stop gradients to its parameters."""
    module.eval()
    for p in module.parameters():
        p.requires_grad = False


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats are not counted)."""
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)


def analyze(model_or_cfg: Union[nn.Module, dict], shape: Sequence[int] = (512, 512),
            by_module: bool = False, on_meta: bool = False) -> dict:
    """Parameter count and FLOPs of one forward pass on a (1, 3, H, W) input.

    Args:
        model_or_cfg: a built ``nn.Module`` or a model config dict (``cfg.model``), built
            with densebox's ``MODELS`` registry (the modules that register the classes
            must have been imported).
        shape: (H, W) of the input.
        by_module: also return ``modules``: ``{child name: dict(params, flops, madds)}``
            for the model's direct children (backbone, neck, decode_head, ...).
        on_meta: build a config on the ``meta`` device and count there: no memory and
            no arithmetic, so large models at large inputs take seconds (a model whose
            forward reads tensor values cannot run there). Attention is counted there
            (it runs as matmuls), not on the CPU, where torch's fused attention kernel
            escapes ``FlopCounterMode``; other counts are the same.

    Returns:
        ``dict(params=int, flops=int, madds=int)``. FLOPs come from
        ``torch.utils.flop_counter.FlopCounterMode`` and count convolutions and matrix
        products only, one multiply-add as 2 FLOPs; ``madds = flops // 2`` is the
        multiply-add count that papers (MobileNetV2's "MAdds") report. Norms,
        activations, pooling and interpolation are not counted.

    Models derived from mmengine's ``BaseModel`` run with ``mode='tensor'`` (the network
    without pre- or post-processing); other modules are simply called.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(model_or_cfg, nn.Module):
        model = model_or_cfg
    else:
        from densebox.registry import MODELS
        if on_meta:
            with torch.device('meta'):
                model = MODELS.build(copy.deepcopy(model_or_cfg))
        else:
            model = MODELS.build(copy.deepcopy(model_or_cfg))
    if len(shape) != 2:
        raise ValueError(f'analyze: shape must be (H, W), got {tuple(shape)}')
    params = count_parameters(model)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device('cpu')
    x = torch.randn(1, 3, int(shape[0]), int(shape[1]), device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if _is_mmengine_model(model):
            model(x, None, mode='tensor')
        else:
            model(x)
    model.train(was_training)
    flops = int(counter.get_total_flops())
    result = dict(params=params, flops=flops, madds=flops // 2)
    if by_module:
        # FlopCounterMode names modules '<ModelClass>.<child>.<...>'.
        counts = counter.get_flop_counts()
        root = type(model).__name__
        result['modules'] = {}
        for name, child in model.named_children():
            child_flops = int(sum(counts.get(f'{root}.{name}', {}).values()))
            result['modules'][name] = dict(params=count_parameters(child), flops=child_flops,
                                           madds=child_flops // 2)
    return result


def _is_mmengine_model(model: nn.Module) -> bool:
    from mmengine.model import BaseModel
    return isinstance(model, BaseModel)

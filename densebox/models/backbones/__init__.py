from .clip_dense import CLIPResNet, CLIPVisionTransformer
from .clip_text import CLIPTextContextEncoder
from .ffnet_resnet import FFNetResNet
from .mobilenet_v2 import MobileNetV2
from .vgg_ssd import SSDVGG

import densebox.zoo  # noqa: F401,E402  registers zoo://NAME, the recipes' starting points

__all__ = ['CLIPResNet', 'CLIPTextContextEncoder', 'CLIPVisionTransformer', 'FFNetResNet',
           'MobileNetV2', 'SSDVGG']

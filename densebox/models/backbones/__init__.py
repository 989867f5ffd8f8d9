from .clip_dense import CLIPResNet, CLIPVisionTransformer
from .clip_text import CLIPTextContextEncoder
from .ffnet_resnet import FFNetResNet
from .mobilenet_v2 import MobileNetV2
from .vgg_ssd import SSDVGG

__all__ = ['CLIPResNet', 'CLIPTextContextEncoder', 'CLIPVisionTransformer', 'FFNetResNet',
           'MobileNetV2', 'SSDVGG']

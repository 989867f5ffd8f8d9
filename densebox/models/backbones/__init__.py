from .ffnet_resnet import FFNetResNet
from .mobilenet_v2 import MobileNetV2
from .vgg_ssd import SSDVGG

__all__ = ['FFNetResNet', 'MobileNetV2', 'SSDVGG']

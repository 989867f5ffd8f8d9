from .ffnet_resnet import FFNetResNet
from .mobilenet_v2 import MobileNetV2
from .torchvision_resnet import TorchvisionResNet
from .vgg_ssd import SSDVGG

__all__ = ['FFNetResNet', 'MobileNetV2', 'SSDVGG', 'TorchvisionResNet']

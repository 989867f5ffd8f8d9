from .ffnet_resnet import FFNetResNet
from .iformer import IFormer, IFormerClassifier
from .mobilenet_v2 import MobileNetV2
from .sgformer import SGFormer, SGFormerClassifier
from .vgg_ssd import SSDVGG

__all__ = ['FFNetResNet', 'IFormer', 'IFormerClassifier', 'MobileNetV2', 'SGFormer',
           'SGFormerClassifier', 'SSDVGG']

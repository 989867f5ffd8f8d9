from .clip_dense import CLIPResNet, CLIPVisionTransformer
from .clip_text import CLIPTextContextEncoder
from .ffnet_resnet import FFNetResNet
from .iformer import IFormer, IFormerClassifier
from .mobilenet_v2 import MobileNetV2
from .sgformer import SGFormer, SGFormerClassifier
from .torchvision_resnet import TorchvisionResNet
from .vgg_ssd import SSDVGG

__all__ = ['CLIPResNet', 'CLIPTextContextEncoder', 'CLIPVisionTransformer', 'FFNetResNet',
           'IFormer', 'IFormerClassifier', 'MobileNetV2', 'SGFormer', 'SGFormerClassifier',
           'SSDVGG', 'TorchvisionResNet']

from .vgg_ssd import SSDVGG

__all__ = ['SSDVGG']

from .denseclip import DenseCLIP
from .encoder_decoder import EncoderDecoder
from .reco import ReCoSegmentor

__all__ = ['DenseCLIP', 'EncoderDecoder', 'ReCoSegmentor']

from .encoder_decoder import EncoderDecoder
from .reco import ReCoSegmentor

__all__ = ['EncoderDecoder', 'ReCoSegmentor']

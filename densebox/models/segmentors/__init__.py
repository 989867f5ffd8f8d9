from .denseclip import DenseCLIP
from .encoder_decoder import EncoderDecoder

__all__ = ['DenseCLIP', 'EncoderDecoder']

from .aspp_head import ASPPHead
from .context_decoder import ContextDecoder
from .decode_head import BaseDecodeHead
from .deeplabv3plus_head import DeepLabV3PlusHead
from .fcn_head import FCNHead
from .ffnet_head import FFNetUpHead
from .fpn_head import FPNHead
from .uper_head import UPerHead

__all__ = ['BaseDecodeHead', 'ContextDecoder', 'ASPPHead', 'DeepLabV3PlusHead', 'FCNHead',
           'FFNetUpHead', 'FPNHead', 'UPerHead']

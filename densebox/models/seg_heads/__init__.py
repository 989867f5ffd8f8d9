from .aspp_head import ASPPHead
from .decode_head import BaseDecodeHead
from .deeplabv3plus_head import DeepLabV3PlusHead
from .fcn_head import FCNHead
from .ffnet_head import FFNetUpHead

__all__ = ['BaseDecodeHead', 'DeepLabV3PlusHead', 'ASPPHead', 'FCNHead', 'FFNetUpHead']

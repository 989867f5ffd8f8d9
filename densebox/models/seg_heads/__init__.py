from .aspp_head import ASPPHead
from .decode_head import BaseDecodeHead
from .fcn_head import FCNHead
from .ffnet_head import FFNetUpHead

__all__ = ['BaseDecodeHead', 'ASPPHead', 'FCNHead', 'FFNetUpHead']

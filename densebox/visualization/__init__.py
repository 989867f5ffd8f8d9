"""Drawing boxes, masks and legends on RGB images, palettes, saving images."""
from .draw import draw_det, draw_seg, draw_style, save_image, side_by_side
from .palette import get_palette, resolve_palette

__all__ = ['draw_det', 'draw_seg', 'draw_style', 'save_image', 'side_by_side', 'get_palette',
           'resolve_palette']

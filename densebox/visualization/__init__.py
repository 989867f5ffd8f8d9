"""Drawing boxes, masks and legends on RGB images, palettes, saving images."""
from .draw import draw_det, draw_seg, save_image
from .palette import get_palette, resolve_palette

__all__ = ['draw_det', 'draw_seg', 'save_image', 'get_palette', 'resolve_palette']

"""Drawing detections and segmentation maps on RGB images, and saving them.

All functions take and return RGB uint8 (H, W, 3) numpy arrays and never modify their
input. Line widths and text sizes follow the image size (:func:`draw_style`), so an 80 px
thumbnail and a 2048x1024 Cityscapes frame are both readable; box tags stay inside the
image and off each other (:func:`place_tag`); a segmentation legend sits beside the image
by default, so it hides nothing.
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .palette import resolve_palette

__all__ = ['draw_det', 'draw_seg', 'save_image', 'side_by_side', 'draw_style', 'DrawStyle',
           'place_tag']

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _as_numpy(value, name: str, dtype=None) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{name}: cannot convert to a numpy array ({err})') from err


def _check_image(img) -> np.ndarray:
    img = _as_numpy(img, 'img')
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f'img must be an RGB uint8 (H, W, 3) array, got {img.dtype} '
                         f'{img.shape}')
    return img


@dataclass(frozen=True)
class DrawStyle:
    """Sizes in pixels for drawing on one image.

    Attributes:
        line_width: box outline thickness.
        font_scale: OpenCV font scale giving ``text_height``.
        text_thickness: stroke of the letters.
        text_height: height of a line of text (capital letters and descenders).
    """
    line_width: int
    font_scale: float
    text_thickness: int
    text_height: int


_REF_HEIGHT = cv2.getTextSize('Ag', _FONT, 1.0, 1)  # ((w, h), baseline) at scale 1


def draw_style(height: int, width: int, line_width: Optional[int] = None,
               font_size: Optional[float] = None) -> DrawStyle:
    """Line width and text size that follow the image size.

    A line of text is 10 px high up to 200 px images (smaller letters are not legible), 12 px
    at 300 px and 35 px on a 2048x1024 frame; lines are 1 px up to about 600 px and grow
    from there. ``line_width`` (px) and ``font_size`` (text height in px) override them.
    """
    size = float(np.sqrt(height * width))
    if line_width is None:
        line_width = max(1, int(round(size / 400)))
    if font_size is None:
        font_size = float(np.clip(0.02 * size + 6.0, 10.0, 40.0))
    if line_width < 1 or font_size <= 0:
        raise ValueError(f'line_width must be >= 1 and font_size > 0, got {line_width}, '
                         f'{font_size}')
    (_, ref_h), ref_base = _REF_HEIGHT
    font_scale = float(font_size) / (ref_h + ref_base)
    text_thickness = max(1, int(round(font_size / 14)))
    return DrawStyle(int(line_width), font_scale, text_thickness, int(round(font_size)))


def _text_colour(rgb: np.ndarray) -> Tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _tag_size(text: str, style: DrawStyle) -> Tuple[int, int, int, int]:
    """(tag width, tag height, text height above the baseline, padding) of a text tag."""
    (tw, th), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.text_thickness)
    pad = max(1, style.text_height // 6)
    return tw + 2 * pad, th + baseline + 2 * pad, th, pad


def _overlap(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> int:
    """Intersection area of two (x1, y1, x2, y2) rectangles."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def place_tag(box: Sequence[int], tag_w: int, tag_h: int, height: int, width: int,
              taken: Sequence[Tuple[int, int, int, int]]) -> Tuple[int, int, int, int]:
    """Where a (tag_w, tag_h) tag of ``box`` goes: inside the image and off earlier tags.

    Tried in order: above the box's top-left corner, inside it at the top-left, below its
    bottom-left, inside at the bottom-left, then the same on the right; each is shifted
    into the image. The first that overlaps no rectangle in ``taken`` wins, else the one
    overlapping least.

    Returns:
        (x1, y1, x2, y2) of the tag.
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    lefts = (x1, x2 - tag_w)
    tops = (y1 - tag_h, y1, y2, y2 - tag_h)
    best, best_overlap = None, None
    for left in lefts:
        for top in tops:
            x = int(min(max(left, 0), max(width - tag_w, 0)))
            y = int(min(max(top, 0), max(height - tag_h, 0)))
            rect = (x, y, x + tag_w, y + tag_h)
            overlap = sum(_overlap(rect, t) for t in taken)
            if overlap == 0:
                return rect
            if best_overlap is None or overlap < best_overlap:
                best, best_overlap = rect, overlap
    return best


def _draw_tag(canvas: np.ndarray, text: str, rect: Tuple[int, int, int, int],
              colour: np.ndarray, style: DrawStyle) -> None:
    x1, y1, x2, y2 = rect
    _, _, th, pad = _tag_size(text, style)
    cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), tuple(int(c) for c in colour),
                  thickness=-1)
    cv2.putText(canvas, text, (x1 + pad, y1 + pad + th), _FONT, style.font_scale,
                _text_colour(colour), style.text_thickness, cv2.LINE_AA)


def _outline(canvas: np.ndarray, box, colour, width: int) -> None:
    """A box outline exactly ``width`` pixels wide, inside the box (OpenCV's thick
    rectangles are 2 * (width // 2) + 1 wide, centred on the edge)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    colour = tuple(int(c) for c in colour)
    t = max(1, min(int(width), x2 - x1 + 1, y2 - y1 + 1))
    for a, b in (((x1, y1), (x2, y1 + t - 1)), ((x1, y2 - t + 1), (x2, y2)),
                 ((x1, y1), (x1 + t - 1, y2)), ((x2 - t + 1, y1), (x2, y2))):
        cv2.rectangle(canvas, a, b, colour, thickness=-1)


def draw_det(img, bboxes, labels, scores=None, class_names: Optional[Sequence[str]] = None,
             palette=None, score_thr: float = 0.3, line_width: Optional[int] = None,
             font_size: Optional[float] = None, show_labels: bool = True,
             show_scores: bool = True) -> np.ndarray:
    """Draw boxes with "name 0.87" tags.

    Args:
        img: (H, W, 3) RGB uint8.
        bboxes: (K, 4) xyxy pixels (numpy or tensor).
        labels: (K,) int class indices.
        scores: (K,) or None. Boxes scoring below ``score_thr`` are not drawn; without
            scores every box is drawn and the tag holds the name only.
        class_names: C names (labels are printed as numbers when None).
        palette: C RGB triples (e.g. ``dataset.metainfo['palette']``); generated if None.
        score_thr: score threshold.
        line_width: box outline in pixels (default: follows the image size).
        font_size: tag text height in pixels (default: follows the image size).
        show_labels: draw the tags at all.
        show_scores: put the score in the tags.

    Tags are placed by decreasing score, each where it is inside the image and off the
    tags placed before it (:func:`place_tag`).

    Returns:
        (H, W, 3) RGB uint8, a new array.
    """
    canvas = _check_image(img).copy()
    height, width = canvas.shape[:2]
    bboxes = _as_numpy(bboxes, 'bboxes', np.float64)
    if bboxes.size == 0:
        bboxes = bboxes.reshape(0, 4)
    if bboxes.ndim != 2 or bboxes.shape[1] != 4:
        raise ValueError(f'draw_det: bboxes must be (K, 4) xyxy, got {bboxes.shape}')
    labels = _as_numpy(labels, 'labels').reshape(-1).astype(np.int64)
    if bboxes.shape[0] != labels.shape[0]:
        raise ValueError(f'draw_det: {bboxes.shape[0]} boxes but {labels.shape[0]} labels')
    if not np.isfinite(bboxes).all():
        raise ValueError('draw_det: bboxes contain nan or inf')
    if scores is not None:
        scores = _as_numpy(scores, 'scores', np.float64).reshape(-1)
        if scores.shape != labels.shape:
            raise ValueError(f'draw_det: {scores.shape[0]} scores but {labels.shape[0]} labels')
        keep = scores >= score_thr
        bboxes, labels, scores = bboxes[keep], labels[keep], scores[keep]
    num_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f'draw_det: label {labels.min()}..{labels.max()} outside '
                         f'0..{num_classes - 1} ({num_classes} class names)')
    colours = resolve_palette(palette, num_classes)
    style = draw_style(height, width, line_width, font_size)

    # highest score first: it gets the best tag position and is drawn on top
    order = (np.argsort(-scores, kind='stable') if scores is not None
             else np.arange(len(labels)))
    boxes = np.round(bboxes).astype(np.int64)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    for i in order[::-1]:  # drawing is per box by nature
        _outline(canvas, boxes[i], colours[labels[i]], style.line_width)
    if not show_labels:
        return canvas
    taken, tags = [], []
    for i in order:
        name = class_names[labels[i]] if class_names is not None else str(labels[i])
        text = f'{name} {scores[i]:.2f}' if scores is not None and show_scores else name
        tag_w, tag_h, _, _ = _tag_size(text, style)
        rect = place_tag(boxes[i], tag_w, tag_h, height, width, taken)
        taken.append(rect)
        tags.append((text, rect, colours[labels[i]]))
    for text, rect, colour in tags[::-1]:  # the best-scoring tag ends on top
        _draw_tag(canvas, text, rect, colour, style)
    return canvas


def draw_seg(img, seg_map, class_names: Sequence[str], palette=None, alpha: float = 0.5,
             ignore_index: int = 255, legend: Union[bool, str] = True,
             font_size: Optional[float] = None) -> np.ndarray:
    """Blend a class map over an image, with a legend of the classes present.

    Args:
        img: (H, W, 3) RGB uint8.
        seg_map: (H, W) int class indices; ``ignore_index`` pixels stay as in ``img``.
        class_names: C names.
        palette: C RGB triples; generated if None.
        alpha: mask opacity in [0, 1].
        ignore_index: label left undrawn.
        legend: ``'outside'`` (or True): a white panel beside the image (right of it, or
            below a wide image), which then grows; ``'inside'``: a translucent panel in the
            top-left corner; False / ``'none'``: no legend. Swatches are outlined, so a black
            or white class shows on any panel.
        font_size: legend text height in pixels (default: follows the image size).

    Returns:
        RGB uint8, a new array: (H, W, 3), or larger with an ``'outside'`` legend.
    """
    img = _check_image(img)
    seg = _as_numpy(seg_map, 'seg_map')
    if seg.ndim == 3 and seg.shape[0] == 1:
        seg = seg[0]
    if seg.shape != img.shape[:2]:
        raise ValueError(f'draw_seg: seg_map {seg.shape} does not match image {img.shape[:2]}')
    if not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f'draw_seg: seg_map must hold integer class indices, got {seg.dtype}')
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'draw_seg: alpha must be in [0, 1], got {alpha}')
    mode = {True: 'outside', False: 'none', None: 'none'}.get(legend, legend)
    if mode not in ('outside', 'inside', 'none'):
        raise ValueError(f"draw_seg: legend must be 'outside', 'inside', 'none' or a bool, "
                         f'got {legend!r}')
    seg = seg.astype(np.int64)
    num_classes = len(class_names)
    valid = seg != ignore_index
    present = np.unique(seg[valid])
    if present.size and (present[0] < 0 or present[-1] >= num_classes):
        raise ValueError(f'draw_seg: seg_map value {present[0]}..{present[-1]} outside '
                         f'0..{num_classes - 1} (ignore_index={ignore_index})')
    colours = resolve_palette(palette, num_classes)

    colour_map = colours[np.where(valid, seg, 0)].astype(np.float32)  # (H, W, 3)
    blended = img.astype(np.float32) * (1.0 - alpha) + colour_map * alpha
    canvas = np.where(valid[..., None], np.round(blended), img).astype(np.uint8)
    if mode == 'none' or not present.size:
        return canvas
    names = [class_names[c] for c in present]
    style = draw_style(*canvas.shape[:2], font_size=font_size)
    if mode == 'inside':
        _draw_legend_inside(canvas, names, colours[present], style)
        return canvas
    return _with_legend_outside(canvas, names, colours[present], style)


def _legend_layout(names: Sequence[str], style: DrawStyle):
    """(row height, swatch side, margin, widest name) of a legend."""
    widths = [cv2.getTextSize(n, _FONT, style.font_scale, style.text_thickness)[0][0]
              for n in names]
    row_h = style.text_height + max(3, style.text_height // 3)
    swatch = style.text_height
    margin = max(3, style.text_height // 2)
    return row_h, swatch, margin, max(widths)


def _draw_legend_rows(panel: np.ndarray, names, colours, style: DrawStyle, per_line: int,
                      col_w: int, row_major: bool = False, text_colour=(0, 0, 0),
                      outline=(80, 80, 80)) -> None:
    """Swatch + name entries: down columns of ``per_line`` rows, or (``row_major``) along
    rows of ``per_line`` columns."""
    row_h, swatch, margin, _ = _legend_layout(names, style)
    (_, th), _ = cv2.getTextSize('Ag', _FONT, style.font_scale, style.text_thickness)
    for k, (name, colour) in enumerate(zip(names, colours)):
        if row_major:
            row, col = divmod(k, per_line)
        else:
            col, row = divmod(k, per_line)
        x, y = margin + col * col_w, margin + row * row_h
        cv2.rectangle(panel, (x, y), (x + swatch - 1, y + swatch - 1),
                      tuple(int(c) for c in colour), thickness=-1)
        cv2.rectangle(panel, (x, y), (x + swatch - 1, y + swatch - 1), outline, thickness=1)
        baseline_y = y + (swatch + th) // 2
        cv2.putText(panel, name, (x + swatch + margin, baseline_y), _FONT, style.font_scale,
                    text_colour, style.text_thickness, cv2.LINE_AA)


def _with_legend_outside(canvas: np.ndarray, names, colours, style: DrawStyle) -> np.ndarray:
    """The image with a white legend panel to its right (below it when it is wide)."""
    height, width = canvas.shape[:2]
    row_h, swatch, margin, text_w = _legend_layout(names, style)
    col_w = swatch + 2 * margin + text_w
    if width <= 1.3 * height:  # right of the image, columns as tall as the image
        rows_per_col = max(1, (height - 2 * margin) // row_h)
        cols = -(-len(names) // rows_per_col)
        panel = np.full((height, cols * col_w + margin, 3), 255, np.uint8)
        _draw_legend_rows(panel, names, colours, style, rows_per_col, col_w)
        return np.concatenate([canvas, panel], axis=1)
    cols = max(1, (width - margin) // col_w)  # below the image, rows as wide as the image
    rows = -(-len(names) // cols)
    panel = np.full((rows * row_h + 2 * margin, width, 3), 255, np.uint8)
    _draw_legend_rows(panel, names, colours, style, cols, col_w, row_major=True)
    return np.concatenate([canvas, panel], axis=0)


def _draw_legend_inside(canvas: np.ndarray, names, colours, style: DrawStyle) -> None:
    """Swatches and names on a translucent white panel in the top-left corner (in place)."""
    height, width = canvas.shape[:2]
    row_h, swatch, margin, text_w = _legend_layout(names, style)
    col_w = swatch + 2 * margin + text_w
    rows_per_col = max(1, (height - 2 * margin) // row_h)
    cols = -(-len(names) // rows_per_col)
    panel_w = min(width, cols * col_w + margin)
    panel_h = min(height, min(len(names), rows_per_col) * row_h + 2 * margin)
    region = canvas[:panel_h, :panel_w]
    region[...] = np.round(region.astype(np.float32) * 0.4 + 255 * 0.6).astype(np.uint8)
    _draw_legend_rows(region, names, colours, style, rows_per_col, col_w)


def side_by_side(images: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None,
                 gap: int = 4) -> np.ndarray:
    """Images in a row (top-aligned, white gaps), each under a title strip.

    Args:
        images: RGB uint8 (H_i, W_i, 3) arrays.
        titles: one caption per image, or None.
        gap: white pixels between images.

    Returns:
        (max H_i + title strip, sum W_i + gaps, 3) RGB uint8.
    """
    images = [_check_image(im) for im in images]
    if not images:
        raise ValueError('side_by_side: no images')
    height = max(im.shape[0] for im in images)
    style = draw_style(height, max(im.shape[1] for im in images))
    strip = 0 if not titles else style.text_height + 2 * max(2, style.text_height // 3)
    total_w = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    canvas = np.full((height + strip, total_w, 3), 255, np.uint8)
    x = 0
    for k, im in enumerate(images):
        canvas[strip:strip + im.shape[0], x:x + im.shape[1]] = im
        if titles:
            (_, th), _ = cv2.getTextSize('Ag', _FONT, style.font_scale, style.text_thickness)
            cv2.putText(canvas, str(titles[k]), (x + 2, (strip + th) // 2), _FONT,
                        style.font_scale, (0, 0, 0), style.text_thickness, cv2.LINE_AA)
        x += im.shape[1] + gap
    return canvas


def save_image(path: str, rgb: np.ndarray) -> str:
    """Write an RGB uint8 (H, W, 3) image (format from the extension), creating parent dirs."""
    rgb = _check_image(rgb)
    parent = osp.dirname(osp.abspath(str(path)))
    os.makedirs(parent, exist_ok=True)
    try:
        ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error as err:
        raise OSError(f'save_image: could not write {path}: {err}') from err
    if not ok:
        raise OSError(f'save_image: could not write {path}')
    return str(path)

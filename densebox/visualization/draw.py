"""Drawing detections and segmentation maps on RGB images, and saving them.

All functions take and return RGB uint8 (H, W, 3) numpy arrays and never modify their
input. Line widths and text sizes follow the image size, so a 300x300 thumbnail and a
2048x1024 Cityscapes frame are both readable.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .palette import resolve_palette

__all__ = ['draw_det', 'draw_seg', 'save_image']

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


def _style(height: int, width: int) -> Tuple[int, float, int]:
    """(line thickness, font scale, text thickness) for an image of this size."""
    size = float(np.sqrt(height * width))
    thickness = max(1, int(round(size / 400)))
    font_scale = max(0.4, size / 1000)
    return thickness, font_scale, max(1, int(round(font_scale * 1.5)))


def _text_colour(rgb: np.ndarray) -> Tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _draw_tag(canvas: np.ndarray, text: str, x: int, y: int, colour: np.ndarray,
              font_scale: float, text_thickness: int, above: bool = True) -> None:
    """A filled tag holding ``text`` whose bottom-left (``above``) or top-left is (x, y)."""
    height, width = canvas.shape[:2]
    (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, text_thickness)
    pad = max(1, text_thickness)
    tag_w, tag_h = tw + 2 * pad, th + baseline + 2 * pad
    x = int(min(max(x, 0), max(width - tag_w, 0)))
    top = y - tag_h if above and y - tag_h >= 0 else y
    top = int(min(max(top, 0), max(height - tag_h, 0)))
    cv2.rectangle(canvas, (x, top), (x + tag_w, top + tag_h), tuple(int(c) for c in colour),
                  thickness=-1)
    cv2.putText(canvas, text, (x + pad, top + pad + th), _FONT, font_scale,
                _text_colour(colour), text_thickness, cv2.LINE_AA)


def draw_det(img, bboxes, labels, scores=None, class_names: Optional[Sequence[str]] = None,
             palette=None, score_thr: float = 0.3) -> np.ndarray:
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
    thickness, font_scale, text_thickness = _style(height, width)

    order = np.argsort(scores, kind='stable') if scores is not None else np.arange(len(labels))
    boxes = np.round(bboxes).astype(np.int64)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    for i in order:  # drawing is per box by nature; the highest score ends on top
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        colour = colours[labels[i]]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), tuple(int(c) for c in colour), thickness)
        name = class_names[labels[i]] if class_names is not None else str(labels[i])
        text = name if scores is None else f'{name} {scores[i]:.2f}'
        _draw_tag(canvas, text, x1, y1, colour, font_scale, text_thickness)
    return canvas


def draw_seg(img, seg_map, class_names: Sequence[str], palette=None, alpha: float = 0.5,
             ignore_index: int = 255, legend: bool = True) -> np.ndarray:
    """Blend a class map over an image, with a legend of the classes present.

    Args:
        img: (H, W, 3) RGB uint8.
        seg_map: (H, W) int class indices; ``ignore_index`` pixels stay as in ``img``.
        class_names: C names.
        palette: C RGB triples; generated if None.
        alpha: mask opacity in [0, 1].
        ignore_index: label left undrawn.
        legend: draw a swatch + name per present class in the top-left corner.

    Returns:
        (H, W, 3) RGB uint8, a new array.
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
    if legend and present.size:
        _draw_legend(canvas, [class_names[c] for c in present], colours[present])
    return canvas


def _draw_legend(canvas: np.ndarray, names: Sequence[str], colours: np.ndarray) -> None:
    """Swatches and names in columns from the top-left corner, on a darkened panel."""
    height, width = canvas.shape[:2]
    _, font_scale, text_thickness = _style(height, width)
    (_, th), baseline = cv2.getTextSize('Ag', _FONT, font_scale, text_thickness)
    row_h = th + baseline + 4
    swatch = th + baseline
    margin = max(2, row_h // 4)
    rows_per_col = max(1, (height - 2 * margin) // row_h)
    text_w = max(cv2.getTextSize(n, _FONT, font_scale, text_thickness)[0][0] for n in names)
    col_w = swatch + 3 * margin + text_w
    num_cols = -(-len(names) // rows_per_col)
    panel_w = min(width, num_cols * col_w + margin)
    panel_h = min(height, min(len(names), rows_per_col) * row_h + 2 * margin)
    panel = canvas[:panel_h, :panel_w]
    panel[...] = (panel.astype(np.float32) * 0.35).astype(np.uint8)  # darken, keep context
    for k, (name, colour) in enumerate(zip(names, colours)):
        col, row = divmod(k, rows_per_col)
        x, y = margin + col * col_w, margin + row * row_h
        cv2.rectangle(canvas, (x, y + 2), (x + swatch, y + 2 + swatch),
                      tuple(int(c) for c in colour), thickness=-1)
        cv2.putText(canvas, name, (x + swatch + margin, y + 2 + th), _FONT, font_scale,
                    (255, 255, 255), text_thickness, cv2.LINE_AA)


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

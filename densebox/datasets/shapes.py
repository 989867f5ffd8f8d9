"""Synthetic "shapes" data set: coloured geometric shapes on textured backgrounds.

``generate_shapes(out_dir, ...)`` writes, deterministically from ``seed``::

    out_dir/
      images/{train,val}/<split>_<index:06d>.jpg       RGB images
      annotations/instances_{train,val}.json           COCO instances (bbox, area, iscrowd=0,
                                                       polygon segmentation of the visible part)
      masks/{train,val}/<split>_<index:06d>.png        uint8 semantic masks: 0 = background,
                                                       k + 1 = SHAPES_CLASSES[k]
      VOC/JPEGImages/<name>.jpg, VOC/Annotations/<name>.xml,
      VOC/ImageSets/Main/{train,val,trainval}.txt      the same data in the VOC layout
      .shapes_version                                  marker: generator version + arguments

Each image holds 1..``max_objects`` shapes of random class, colour (contrasting with what
lies beneath in most cases), size (``size_range`` of the shorter image side, log-uniform)
and rotation, drawn in order so later shapes occlude earlier ones; a placement is rejected
when it would hide more than 40% of an earlier shape. Boxes, areas and masks describe the
visible pixels. Backgrounds are flat, gradients, stripes or smooth colour blobs, plus noise.

Use it through the COCO path: ``CocoDetDataset(ann_file='annotations/instances_train.json',
data_prefix=dict(img='images/train/'), metainfo=dict(classes=SHAPES_CLASSES), ...)``.
"""
import functools
import json
import os
import os.path as osp
import shutil
import time
from typing import List, Tuple

import cv2
import numpy as np

SHAPES_CLASSES = ('circle', 'square', 'triangle', 'star', 'cross')
GENERATOR_VERSION = 1
MARKER = '.shapes_version'
SPLITS = ('train', 'val')

_SHIFT = 4  # cv2 fixed-point bits for sub-pixel polygon vertices
_MIN_VISIBLE = 0.6  # an earlier shape must keep this fraction of its pixels visible


# ----------------------------------------------------------------------------- drawing
@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return yy.astype(np.float32), xx.astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 background: flat, gradient, stripes or blobs."""
    kind = rng.integers(4)
    c1, c2 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    if kind == 0:
        img = np.broadcast_to(c1, (h, w, 3)).astype(np.float32)
    elif kind in (1, 2):
        yy, xx = _grid(h, w)
        angle = rng.uniform(0, np.pi)
        proj = xx * np.cos(angle) + yy * np.sin(angle)
        if kind == 1:
            t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
        else:
            period = rng.uniform(6, 28)
            t = 0.5 + 0.5 * np.sin(proj * (2 * np.pi / period))
            if rng.random() < 0.5:
                t = (t > 0.5).astype(np.float32)
            c2 = c1 + (c2 - c1) * rng.uniform(0.3, 0.7)  # softer stripes
        img = c1 + (c2 - c1) * t[..., None]
    else:
        cells = rng.uniform(0, 255, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
        img = cv2.resize(cells.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(img, dtype=np.float32)


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]], np.float64)


def _outline(label: int, size: float, rng: np.random.Generator) -> np.ndarray:
    """(P, 2) polygon of class ``label`` centred on 0, about ``size`` across; circles: (1, 2)
    holding the radius twice."""
    r = size / 2
    name = SHAPES_CLASSES[label]
    if name == 'circle':
        return np.array([[r, r]])
    if name == 'square':
        pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.9
        return _rotate(pts, rng.uniform(0, np.pi / 2))
    if name == 'triangle':
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(a), -np.sin(a)], 1) * r * 1.1
        return _rotate(pts, rng.uniform(0, 2 * np.pi))
    if name == 'star':
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, r * 1.1, r * 0.47)
        pts = np.stack([np.cos(a), -np.sin(a)], 1) * radius[:, None]
        return _rotate(pts, rng.uniform(0, 2 * np.pi))
    # cross: a plus sign with arms a third of its size wide
    a, b = r, r / 3
    pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                    [-b, b], [-a, b], [-a, -b], [-b, -b]])
    return _rotate(pts, rng.uniform(0, np.pi / 2))


def _draw(target: np.ndarray, label: int, outline: np.ndarray, centre: np.ndarray, value) -> None:
    """Fill the shape into ``target`` in place (the same pixels for any target)."""
    scale = 1 << _SHIFT
    if SHAPES_CLASSES[label] == 'circle':
        cx, cy = np.round(centre * scale).astype(int)
        cv2.circle(target, (int(cx), int(cy)), int(round(outline[0, 0] * scale)), value, -1,
                   lineType=cv2.LINE_8, shift=_SHIFT)
    else:
        pts = np.round((outline + centre) * scale).astype(np.int32)
        cv2.fillPoly(target, [pts], value, lineType=cv2.LINE_8, shift=_SHIFT)


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A colour far from the mean colour ``under`` (3,) in most images."""
    min_dist = 60.0 if rng.random() < 0.1 else 110.0
    colour = rng.uniform(0, 255, 3)
    for _ in range(20):
        if np.linalg.norm(colour - under) >= min_dist:
            break
        colour = rng.uniform(0, 255, 3)
    return colour.astype(np.float32)


def render_image(rng: np.random.Generator, h: int, w: int, max_objects: int = 5,
                 size_range: Tuple[float, float] = (0.12, 0.5)):
    """One synthetic image.

    Returns:
        img: (h, w, 3) uint8 RGB.
        sem: (h, w) uint8, 0 = background, label + 1 elsewhere.
        instances: list of (label, visible mask (h, w) bool), in drawing order.
    """
    img = _background(rng, h, w)
    sem = np.zeros((h, w), np.uint8)
    labels: List[int] = []
    visible: List[np.ndarray] = []  # (h, w) uint8 0/1 masks of the visible parts
    visible_area: List[int] = []
    full_area: List[int] = []
    side = min(h, w)
    log_lo, log_hi = np.log(size_range[0] * side), np.log(size_range[1] * side)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(15):
            label = int(rng.integers(len(SHAPES_CLASSES)))
            outline = _outline(label, float(np.exp(rng.uniform(log_lo, log_hi))), rng)
            extent = np.abs(outline).max(0) + 1
            if extent[0] * 2 >= w or extent[1] * 2 >= h:
                continue
            centre = np.array([rng.uniform(extent[0], w - extent[0]),
                               rng.uniform(extent[1], h - extent[1])])
            mask = np.zeros((h, w), np.uint8)
            _draw(mask, label, outline, centre, 1)
            area = cv2.countNonZero(mask)
            if area < 30:
                continue
            hidden = [cv2.countNonZero(cv2.bitwise_and(vis, mask)) for vis in visible]
            if all(a_vis - a_hid >= _MIN_VISIBLE * a_full
                   for a_hid, a_vis, a_full in zip(hidden, visible_area, full_area)):
                break
        else:
            continue
        colour = _pick_colour(rng, np.array(cv2.mean(img, mask)[:3]))
        _draw(img, label, outline, centre, tuple(float(c) for c in colour))
        _draw(sem, label, outline, centre, label + 1)
        inverse = 1 - mask
        visible = [cv2.bitwise_and(vis, inverse) for vis in visible] + [mask]
        visible_area = [a_vis - a_hid for a_vis, a_hid in zip(visible_area, hidden)] + [area]
        full_area.append(area)
        labels.append(label)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(2, 14))
    img = np.clip(img + noise + 0.5, 0, 255)
    return img.astype(np.uint8), sem, [(label, vis > 0) for label, vis in zip(labels, visible)]


# ----------------------------------------------------------------------------- annotations
def _mask_annotation(mask: np.ndarray) -> dict:
    """COCO fields of one visible mask: bbox [x, y, w, h], area, polygon segmentation."""
    mask = mask.astype(np.uint8)
    x, y, w, h = (int(v) for v in cv2.boundingRect(mask))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [c.reshape(-1).tolist() for c in contours if len(c) >= 3]
    if not polygons:
        polygons = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return dict(bbox=[x, y, w, h], area=int(cv2.countNonZero(mask)), segmentation=polygons,
                iscrowd=0)


def _voc_xml(name: str, h: int, w: int, objects: List[Tuple[int, List[int]]]) -> str:
    """VOC xml; ``objects`` are (label, [x, y, w, h]) with 0-based pixel boxes."""
    parts = [f'<annotation>\n  <folder>VOC</folder>\n  <filename>{name}.jpg</filename>\n'
             f'  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n'
             '  </size>\n  <segmented>1</segmented>\n']
    for label, (x, y, bw, bh) in objects:
        # VOC pixel indices are 1-based and inclusive.
        parts.append(f'  <object>\n    <name>{SHAPES_CLASSES[label]}</name>\n'
                     '    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n'
                     '    <difficult>0</difficult>\n    <bndbox>\n'
                     f'      <xmin>{x + 1}</xmin>\n      <ymin>{y + 1}</ymin>\n'
                     f'      <xmax>{x + bw}</xmax>\n      <ymax>{y + bh}</ymax>\n'
                     '    </bndbox>\n  </object>\n')
    parts.append('</annotation>\n')
    return ''.join(parts)


def _write(path: str, data: bytes) -> None:
    with open(path, 'wb') as f:
        f.write(data)


# ----------------------------------------------------------------------------- public API
def _arguments(num_train, num_val, img_size, seed, max_objects, size_range) -> dict:
    return dict(version=GENERATOR_VERSION, num_train=int(num_train), num_val=int(num_val),
                img_size=[int(img_size[0]), int(img_size[1])], seed=int(seed),
                max_objects=int(max_objects), size_range=[float(v) for v in size_range])


def generate_shapes(out_dir: str, num_train: int = 1000, num_val: int = 200,
                    img_size: Tuple[int, int] = (160, 160), seed: int = 0, max_objects: int = 5,
                    size_range: Tuple[float, float] = (0.12, 0.5)) -> str:
    """Write the shapes data set under ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: output folder (created).
        num_train / num_val: images per split.
        img_size: (h, w) of every image.
        seed: the same seed gives byte-identical annotation files.
        max_objects: at most this many shapes per image (at least one).
        size_range: shape size as a fraction of the shorter image side (min, max).

    Returns:
        ``out_dir``.
    """
    h, w = int(img_size[0]), int(img_size[1])
    if min(h, w) < 32:
        raise ValueError(f'generate_shapes: img_size {img_size} is too small (min side 32)')
    if not 0 < size_range[0] <= size_range[1] < 1:
        raise ValueError(
            f'generate_shapes: size_range must satisfy 0 < min <= max < 1, got {size_range}')
    voc = osp.join(out_dir, 'VOC')
    for folder in [osp.join(out_dir, 'annotations'), osp.join(voc, 'JPEGImages'),
                   osp.join(voc, 'Annotations'), osp.join(voc, 'ImageSets', 'Main')]:
        os.makedirs(folder, exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(SHAPES_CLASSES)]
    all_names = []
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        img_dir = osp.join(out_dir, 'images', split)
        mask_dir = osp.join(out_dir, 'masks', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(mask_dir, exist_ok=True)
        images, annotations, names = [], [], []
        for index in range(count):
            rng = np.random.default_rng([seed, split_index, index])
            img, sem, instances = render_image(rng, h, w, max_objects, size_range)
            name = f'{split}_{index:06d}'
            names.append(name)
            jpg = cv2.imencode('.jpg', cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            _write(osp.join(img_dir, name + '.jpg'), jpg)
            _write(osp.join(voc, 'JPEGImages', name + '.jpg'), jpg)
            _write(osp.join(mask_dir, name + '.png'), cv2.imencode('.png', sem)[1].tobytes())
            image_id = index + 1
            images.append(dict(id=image_id, file_name=name + '.jpg', height=h, width=w))
            objects = []
            for label, mask in instances:
                ann = _mask_annotation(mask)
                annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                        category_id=label + 1, **ann))
                objects.append((label, ann['bbox']))
            with open(osp.join(voc, 'Annotations', name + '.xml'), 'w') as f:
                f.write(_voc_xml(name, h, w, objects))
        coco = dict(info=dict(description='densebox synthetic shapes', version=GENERATOR_VERSION,
                              seed=int(seed)),
                    licenses=[], images=images, annotations=annotations, categories=categories)
        with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
            f.write(json.dumps(coco, separators=(',', ':')))
        with open(osp.join(voc, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
            f.write(''.join(n + '\n' for n in names))
        all_names += names
    with open(osp.join(voc, 'ImageSets', 'Main', 'trainval.txt'), 'w') as f:
        f.write(''.join(n + '\n' for n in all_names))
    with open(osp.join(out_dir, MARKER), 'w') as f:
        json.dump(_arguments(num_train, num_val, img_size, seed, max_objects, size_range), f,
                  sort_keys=True)
    return out_dir


def ensure_shapes(root: str, num_train: int = 1000, num_val: int = 200,
                  img_size: Tuple[int, int] = (160, 160), seed: int = 0, max_objects: int = 5,
                  size_range: Tuple[float, float] = (0.12, 0.5), timeout: float = 600.0) -> str:
    """Generate the shapes data set under ``root`` unless its marker file already records the
    same generator version and arguments. Safe when several processes call it at once: one
    generates (into a temporary folder, then moved in place), the others wait for it.

    Returns:
        ``root``.
    """
    expected = _arguments(num_train, num_val, img_size, seed, max_objects, size_range)
    marker = osp.join(root, MARKER)

    def is_ready() -> bool:
        try:
            with open(marker) as f:
                return json.load(f) == expected
        except (OSError, ValueError):
            return False

    if is_ready():
        return root
    os.makedirs(root, exist_ok=True)
    lock = osp.join(root, '.shapes_lock')
    deadline = time.time() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if is_ready():
                return root
            try:
                if time.time() - osp.getmtime(lock) > timeout:
                    os.remove(lock)  # left behind by a killed process
                    continue
            except OSError:
                continue
            if time.time() > deadline:
                raise TimeoutError(f'ensure_shapes: waited {timeout} s for {lock} to go away')
            time.sleep(0.5)
    try:
        os.close(fd)
        if is_ready():
            return root
        tmp = osp.join(root, f'.tmp_shapes_{os.getpid()}')
        shutil.rmtree(tmp, ignore_errors=True)
        generate_shapes(tmp, num_train, num_val, img_size, seed, max_objects, size_range)
        if osp.exists(marker):
            os.remove(marker)
        for sub in ('images', 'annotations', 'masks', 'VOC'):
            shutil.rmtree(osp.join(root, sub), ignore_errors=True)
            os.replace(osp.join(tmp, sub), osp.join(root, sub))
        os.replace(osp.join(tmp, MARKER), marker)
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.remove(lock)
    return root

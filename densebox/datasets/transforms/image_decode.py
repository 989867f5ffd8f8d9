"""Encoded image bytes -> RGB uint8 array, with one policy for EXIF orientation.

Decoding: OpenCV (PIL for the formats OpenCV does not read) gives the stored pixels as
(H, W, 3) uint8 RGB: grey images become three equal channels, an alpha channel is dropped,
16-bit images keep their high byte (``v >> 8``, what OpenCV's and mmcv's ``'color'`` mode
do). Empty, truncated and non-image files raise a ``ValueError`` naming the file.

EXIF orientation (tag 0x0112: the camera's "rotate / mirror this for display") is applied
here, by numpy, not by the decoder, so that every OpenCV version and format behaves alike.
Whether to apply it is the policy of :func:`orient_like_annotation`:

* ``'auto'`` (densebox's default): the annotation's stated image size decides. Annotations
  are drawn on whatever picture the labelling tool showed, and its stated ``width`` /
  ``height`` (COCO json, VOC ``<size>``) tell which one: if they match the rotated picture
  the orientation is applied (what mmcv's ``imfrombytes(..., 'color')``, Detectron2 and
  image viewers do); if they match only the stored pixels, the stored pixels are used
  (what ``'unchanged'`` / ``'color_ignore_orientation'`` and PIL's plain ``Image.open``
  give; COCO's own annotations are of this kind). Either way boxes stay on the objects
  they were drawn on. When the size cannot tell (orientations 2-4 keep the size, and so
  do square images) or no size is stated (inference), the orientation is applied.
* ``'apply'``: always apply it; ``'ignore'``: never.

With every policy a stated size that the chosen picture does not have is an error naming
the file and both sizes: the boxes would not be where the annotation put them.
"""
import io
from typing import Optional, Tuple

import cv2
import numpy as np
from PIL import Image

EXIF_ORIENTATION_TAG = 0x0112
EXIF_POLICIES = ('auto', 'apply', 'ignore')
_JPEG_SOI, _JPEG_EOI = b'\xff\xd8', b'\xff\xd9'


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8) of encoded image bytes; 1 when absent or unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as pil:
            value = pil.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # not an image PIL knows, or a broken EXIF block: no orientation
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_exif_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels (H, W, ...) into the picture EXIF ``orientation`` asks to show.

    The same pixels as ``PIL.ImageOps.exif_transpose``; orientations 5 to 8 swap H and W.
    """
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = img.swapaxes(0, 1)
    elif orientation == 6:
        img = np.rot90(img, -1)  # 90 degrees clockwise
    elif orientation == 7:
        img = img[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        img = np.rot90(img, 1)  # 90 degrees counter-clockwise
    return np.ascontiguousarray(img)


def oriented_size(height: int, width: int, orientation: int) -> Tuple[int, int]:
    """(H, W) of the shown picture for stored pixels of size (H, W)."""
    return (width, height) if orientation >= 5 else (height, width)


def image_file_size(path: str) -> Tuple[int, int]:
    """(H, W) of an image file as shown (EXIF orientation applied), read from its header."""
    with Image.open(path) as pil:
        width, height = pil.size
        value = pil.getexif().get(EXIF_ORIENTATION_TAG, 1)
    orientation = value if isinstance(value, int) and 1 <= value <= 8 else 1
    return oriented_size(height, width, orientation)


def _describe(data: bytes) -> str:
    return f'{len(data)} bytes, starting {data[:8]!r}'


def _pil_decode(data: bytes, path: str) -> np.ndarray:
    """PIL's full decode (raises on truncated data) -> (H, W, 3) uint8 RGB, stored pixels."""
    try:
        with Image.open(io.BytesIO(data)) as pil:
            pil.load()
            if pil.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                grey = (np.asarray(pil, np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(pil.convert('RGB')).copy()
    except Image.UnidentifiedImageError as err:
        raise ValueError(f'{path!r} is not an image file OpenCV or PIL can read '
                         f'({_describe(data)})') from err
    except Exception as err:  # PIL raises many types for broken data (OSError, SyntaxError)
        raise ValueError(f'cannot decode image file {path!r} ({_describe(data)}): it is broken '
                         f'or truncated ({type(err).__name__}: {err})') from err


def decode_stored_rgb(data: bytes, path: str) -> np.ndarray:
    """Decode encoded image bytes to their stored pixels, (H, W, 3) uint8 RGB.

    No EXIF orientation is applied. ``path`` only names the file in errors.
    """
    if len(data) == 0:
        raise ValueError(f'image file {path!r} is empty (0 bytes)')
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        return _pil_decode(data, path)
    if data[:2] == _JPEG_SOI and not data.rstrip(b'\x00\r\n ').endswith(_JPEG_EOI):
        # Some OpenCV builds return a grey-filled partial image for a cut-off JPEG; a JPEG
        # not ending in its end marker is decoded again by PIL, which raises if it is cut off
        # (and succeeds for the rare files with extra bytes after the marker).
        _pil_decode(data, path)
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'image file {path!r} decodes to an empty image {img.shape}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_rgb(data: bytes, path: str,
               stated_hw: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Decode encoded image bytes to (H, W, 3) uint8 RGB, EXIF orientation by the ``'auto'``
    policy: applied (the picture viewers show) unless ``stated_hw`` matches only the stored
    pixels. Give a sample's ``ori_shape`` as ``stated_hw`` to get the picture its boxes and
    predictions are on."""
    image, _ = orient_like_annotation(decode_stored_rgb(data, path), exif_orientation(data),
                                      stated_hw, 'auto', path)
    return image


def orient_like_annotation(stored: np.ndarray, orientation: int,
                           stated_hw: Optional[Tuple[int, int]], policy: str,
                           path: str) -> Tuple[np.ndarray, bool]:
    """Apply or skip the EXIF ``orientation`` of ``stored`` (H, W, 3) by ``policy`` (see the
    module docstring) and check the result against the annotation's ``stated_hw``.

    Returns:
        (image, applied): the (H', W', 3) picture the annotation belongs to, and whether the
        orientation was applied.
    Raises:
        ValueError: the chosen picture is not of the stated size (names ``path``, both sizes).
    """
    if policy not in EXIF_POLICIES:
        raise ValueError(f'exif_orientation must be one of {EXIF_POLICIES}, got {policy!r}')
    stored_hw = stored.shape[:2]
    shown_hw = oriented_size(*stored_hw, orientation)
    if policy == 'apply':
        apply = True
    elif policy == 'ignore':
        apply = False
    else:
        apply = stated_hw is None or tuple(stated_hw) == shown_hw or tuple(stated_hw) != stored_hw
    image_hw = shown_hw if apply else stored_hw
    if stated_hw is not None and tuple(stated_hw) != image_hw:
        detail = ''
        if orientation != 1:
            detail = (f'; its stored pixels are {stored_hw[1]}x{stored_hw[0]} and its EXIF '
                      f'orientation {orientation} shows them as {shown_hw[1]}x{shown_hw[0]}')
        raise ValueError(
            f'image {path!r}: the annotation gives its size as {stated_hw[1]}x{stated_hw[0]} '
            f'(width x height) but the image is {image_hw[1]}x{image_hw[0]}{detail}. The boxes '
            'would not be where they were drawn: fix the width / height (or the image) in the '
            'annotation file.')
    return (apply_exif_orientation(stored, orientation) if apply else stored), apply

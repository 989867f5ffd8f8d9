"""Frame sources for :func:`densebox.inference`: video files, webcams, generators.

A *stream* is an input whose frames arrive one after the other and may never end: a video
file (``.mp4``, ``.avi``, ...), a camera (an int index for OpenCV's ``VideoCapture``, or an
``rtsp://`` / ``rtmp://`` URL) or any Python iterator / generator of images. Inference on a
stream returns a generator of results, one per frame, computed as the frames come.

Video frames are decoded by OpenCV (BGR) and handed on as RGB; frames of a generator are
taken as they are (their colour order is ``color_order`` of the call).
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

import numpy as np

__all__ = ['VIDEO_SUFFIXES', 'is_video_path', 'is_stream', 'VideoInfo', 'open_video',
           'video_frames', 'VideoWriter']

VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')
_STREAM_SCHEMES = ('rtsp://', 'rtmp://', 'udp://')


def is_video_path(item: Any) -> bool:
    """A path or URL that names a video (by its suffix) or a network camera stream."""
    if not isinstance(item, (str, os.PathLike)):
        return False
    text = os.fspath(item)
    return text.lower().endswith(VIDEO_SUFFIXES) or text.lower().startswith(_STREAM_SCHEMES)


def is_stream(inputs: Any) -> bool:
    """Whether :func:`densebox.inference` treats ``inputs`` as a stream (see the module)."""
    if isinstance(inputs, bool):
        return False
    if isinstance(inputs, (int, np.integer)):
        return True  # a camera index
    if is_video_path(inputs):
        return True
    if isinstance(inputs, (str, bytes, os.PathLike, np.ndarray, list, tuple, dict)):
        return False
    try:
        from PIL import Image
        if isinstance(inputs, Image.Image):
            return False
    except ImportError:  # pragma: no cover - pillow is a dependency
        pass
    return hasattr(inputs, '__next__') or (hasattr(inputs, '__iter__')
                                           and not hasattr(inputs, '__len__'))


@dataclass
class VideoInfo:
    """What OpenCV says about an opened source: frames per second (0 when unknown), the
    frame count (0 for cameras and unknown), the frame size."""
    fps: float
    frame_count: int
    width: int
    height: int


def open_video(source) -> Tuple[Any, VideoInfo]:
    """``cv2.VideoCapture`` of a video file, URL or camera index, and its :class:`VideoInfo`.

    Raises:
        FileNotFoundError: a video file that does not exist.
        OSError: OpenCV cannot open or decode the source (the message names it).
    """
    import cv2
    camera = isinstance(source, (int, np.integer)) and not isinstance(source, bool)
    name = f'camera {int(source)}' if camera else os.fspath(source)
    if not camera and not name.lower().startswith(_STREAM_SCHEMES) and not osp.isfile(name):
        raise FileNotFoundError(f'video {name} does not exist')
    capture = cv2.VideoCapture(int(source) if camera else name)
    if not capture.isOpened():
        capture.release()
        raise OSError(f'OpenCV cannot open {name} (no such camera, or a format this OpenCV '
                      'build cannot decode)')
    info = VideoInfo(fps=float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
                     frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
                     width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return capture, info


def video_frames(source, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    """The frames of a video / camera as (H, W, 3) RGB uint8 arrays.

    The source is opened now (so a missing file fails here, not at the first frame); the
    capture is released when the returned generator ends or is closed.
    """
    capture, _ = open_video(source)
    return _read_frames(capture, max_frames)


def _read_frames(capture, max_frames: Optional[int]) -> Iterator[np.ndarray]:
    import cv2
    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


class VideoWriter:
    """Writes RGB frames to a video file (``mp4v`` for ``.mp4``, ``MJPG`` for ``.avi``);
    every frame is resized to the first frame's size. Use as a context manager."""

    def __init__(self, path: str, fps: float, codec: Optional[str] = None):
        self.path = str(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.codec = codec or ('MJPG' if self.path.lower().endswith('.avi') else 'mp4v')
        self._writer = None
        self._size = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import cv2
        if self._writer is None:
            os.makedirs(osp.dirname(osp.abspath(self.path)), exist_ok=True)
            self._size = (int(rgb.shape[1]), int(rgb.shape[0]))
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.codec),
                                           self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f'OpenCV cannot write {self.path} with codec {self.codec!r}; '
                              'try another --out-video suffix (.avi uses MJPG)')
        if (rgb.shape[1], rgb.shape[0]) != self._size:
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> 'VideoWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Result objects of :func:`densebox.inference`: numpy fields, ``to_dict`` / ``to_json``,
``plot``, ``save``.

Both keep the RGB input image (``image``) so that ``plot`` can draw on it; pass
``keep_image=False`` to :func:`densebox.inference` to drop it when memory matters.

A :class:`DetResult` holds every detection the model kept (``test_cfg.score_thr``, often
0.01, as the COCO / VOC metrics want) and one display threshold, ``score_thr`` (set by
``densebox.inference(score_thr=...)``, 0.3 by default, and changeable on the result): it is
what ``to_dict``, ``to_json``, ``plot``, ``save``, ``repr`` and ``densebox infer`` use, each
call can pass another, and ``filter`` makes a result holding only the detections above one.
"""
import json
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ['DetResult', 'SegResult']

BOX_FORMATS = ('xyxy', 'xywh', 'ltwh')


def _palette(palette, class_names: Sequence[str]) -> np.ndarray:
    """The given palette, else the one of the data set that has these class names, else a
    generated one (see :mod:`densebox.visualization.palette`)."""
    from densebox.datasets.palettes import known_palette
    from densebox.visualization.palette import resolve_palette
    if palette is None:
        palette = known_palette(class_names)
    return resolve_palette(palette, len(class_names))


class _Result:
    """Shared bits: the image, its path (and video frame), its size, to_json, save."""

    def __init__(self, image: Optional[np.ndarray], path: Optional[str],
                 shape: Tuple[int, int], class_names: Sequence[str], palette=None,
                 frame: Optional[int] = None):
        self.image = image
        self.path = path
        self.frame = None if frame is None else int(frame)
        self.shape = (int(shape[0]), int(shape[1]))
        self.class_names = tuple(class_names)
        self.palette = _palette(palette, self.class_names)

    def _canvas(self) -> np.ndarray:
        if self.image is None:
            raise ValueError('this result holds no image (inference(..., keep_image=False)); '
                             'pass one: result.plot(image=...)')
        return self.image

    def _where(self) -> dict:
        out = dict(path=self.path, height=self.shape[0], width=self.shape[1])
        if self.frame is not None:
            out['frame'] = self.frame
        return out

    def to_dict(self, **kwargs) -> dict:  # pragma: no cover - defined by the subclasses
        raise NotImplementedError

    def to_json(self, path: Optional[str] = None, indent: Optional[int] = None,
                **to_dict_kwargs) -> str:
        """:meth:`to_dict` as a JSON string; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(**to_dict_kwargs), indent=indent)
        if path is not None:
            with open(path, 'w') as f:
                f.write(text)
        return text

    def save(self, path: str, **plot_kwargs) -> str:
        """Write :meth:`plot` to ``path`` (format from the extension); returns the path."""
        from densebox.visualization import save_image
        return save_image(path, self.plot(**plot_kwargs))


class DetResult(_Result):
    """Detections in one image.

    Attributes:
        boxes: (N, 4) float32 xyxy in pixels of the input image (also ``xyxy``; ``xywh``,
            ``ltwh``, ``xyxyn``, ``xywhn`` give other layouts).
        scores: (N,) float32, highest first.
        labels: (N,) int64 indices into ``class_names``.
        class_names: the model's C class names.
        image: (H, W, 3) uint8 RGB input image, or None.
        path: the image file (or video), None for in-memory inputs.
        frame: the frame index within a video / stream, else None.
        shape: (H, W) of the input image.
        score_thr: the display threshold of ``to_dict``, ``to_json``, ``plot``, ``save``.

    ``len(result)`` is N; ``result[i]``, ``result[2:5]``, ``result[result.labels == 0]``
    and iteration give results holding those detections (same image and threshold).
    """

    def __init__(self, boxes, scores, labels, class_names: Sequence[str],
                 image: Optional[np.ndarray] = None, path: Optional[str] = None,
                 shape: Optional[Tuple[int, int]] = None, palette=None, score_thr: float = 0.3,
                 frame: Optional[int] = None):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        labels = np.asarray(labels, np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f'DetResult: {len(boxes)} boxes, {len(scores)} scores and '
                             f'{len(labels)} labels')
        order = np.argsort(-scores, kind='stable')
        self.boxes, self.scores, self.labels = boxes[order], scores[order], labels[order]
        if shape is None:
            if image is None:
                raise ValueError('DetResult needs the image or its shape')
            shape = image.shape[:2]
        super().__init__(image, path, shape, class_names, palette, frame)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f'DetResult: labels {self.labels.min()}..{self.labels.max()} do '
                             f'not index the {len(self.class_names)} class names')
        self.score_thr = float(score_thr)

    # -------------------------------------------------------------- container behaviour
    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> 'DetResult':
        """Detections ``index`` (an int, a slice, an int array or a boolean mask of N)."""
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f'detection {index} out of range: this result holds {n}')
            index = [int(index)]
        elif isinstance(index, (list, tuple, np.ndarray)):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != self.scores.shape:
                raise IndexError(f'boolean index of {index.shape[0]} entries for '
                                 f'{len(self)} detections')
        elif not isinstance(index, slice):
            raise TypeError(f'DetResult indices are ints, slices, int arrays or boolean '
                            f'masks, not {type(index).__name__}')
        return self._subset(self.boxes[index], self.scores[index], self.labels[index])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _subset(self, boxes, scores, labels) -> 'DetResult':
        return DetResult(boxes, scores, labels, self.class_names, self.image, self.path,
                         self.shape, self.palette, self.score_thr, self.frame)

    def __repr__(self) -> str:
        above = int((self.scores >= self.score_thr).sum())
        where = f', frame {self.frame}' if self.frame is not None else ''
        return (f'DetResult({len(self)} boxes, {above} with score >= {self.score_thr}, '
                f'image {self.shape[0]}x{self.shape[1]}, path={self.path!r}{where})')

    def filter(self, score_thr: Optional[float] = None) -> 'DetResult':
        """A new result with the detections scoring at least ``score_thr`` (default: this
        result's ``score_thr``)."""
        thr = self.score_thr if score_thr is None else float(score_thr)
        return self[self.scores >= thr]

    # --------------------------------------------------------------------- box layouts
    @property
    def label_names(self) -> Tuple[str, ...]:
        """The class name of every detection."""
        return tuple(self.class_names[i] for i in self.labels)

    @property
    def xyxy(self) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 in pixels (the same array as ``boxes``)."""
        return self.boxes

    @property
    def xywh(self) -> np.ndarray:
        """(N, 4) centre x, centre y, width, height in pixels (the YOLO / Ultralytics
        layout; COCO's top-left layout is :attr:`ltwh`)."""
        b = self.boxes
        return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)

    @property
    def ltwh(self) -> np.ndarray:
        """(N, 4) left, top, width, height in pixels (COCO's ``bbox``)."""
        b = self.boxes
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    def _normalise(self, boxes: np.ndarray) -> np.ndarray:
        h, w = self.shape
        return boxes / np.array([w, h, w, h], np.float32)

    @property
    def xyxyn(self) -> np.ndarray:
        """:attr:`xyxy` divided by the image width / height (0..1)."""
        return self._normalise(self.xyxy)

    @property
    def xywhn(self) -> np.ndarray:
        """:attr:`xywh` divided by the image width / height (0..1)."""
        return self._normalise(self.xywh)

    def boxes_as(self, box_format: str = 'xyxy', normalized: bool = False) -> np.ndarray:
        """(N, 4) boxes in ``box_format`` (``'xyxy'``, ``'xywh'`` centre-based,
        ``'ltwh'``), in pixels or, with ``normalized``, fractions of the image size."""
        if box_format not in BOX_FORMATS:
            raise ValueError(f'box_format must be one of {BOX_FORMATS}, got {box_format!r}')
        boxes = getattr(self, box_format)
        return self._normalise(boxes) if normalized else boxes

    # ---------------------------------------------------------------------- exporting
    def to_dict(self, score_thr: Optional[float] = None, box_format: str = 'xyxy',
                normalized: bool = False) -> dict:
        """JSON-ready dict: ``{'path', 'height', 'width', ['frame'], 'score_thr', 'boxes',
        'scores', 'labels', 'label_names'}`` of the detections scoring >= ``score_thr``
        (default: the result's ``score_thr``; 0 gives all), boxes in ``box_format``
        (:meth:`boxes_as`)."""
        res = self.filter(score_thr)
        thr = self.score_thr if score_thr is None else float(score_thr)
        out = self._where()
        out.update(score_thr=thr, box_format=box_format, normalized=bool(normalized),
                   boxes=res.boxes_as(box_format, normalized).tolist(),
                   scores=res.scores.tolist(), labels=res.labels.tolist(),
                   label_names=list(res.label_names))
        return out

    def plot(self, score_thr: Optional[float] = None, image: Optional[np.ndarray] = None,
             line_width: Optional[int] = None, font_size: Optional[float] = None,
             labels: bool = True, conf: bool = True) -> np.ndarray:
        """(H, W, 3) uint8 RGB image with the boxes scoring >= ``score_thr`` (default
        ``self.score_thr``) drawn.

        Args:
            score_thr: display threshold of this call.
            image: draw on this (H, W, 3) RGB image instead of the kept one.
            line_width: box outline in pixels (default: follows the image size).
            font_size: tag text height in pixels (default: follows the image size).
            labels: draw "name score" tags.
            conf: put the score in the tags.
        """
        from densebox.visualization import draw_det
        canvas = self._canvas() if image is None else image
        thr = self.score_thr if score_thr is None else score_thr
        return draw_det(canvas, self.boxes, self.labels, self.scores,
                        class_names=self.class_names, palette=self.palette, score_thr=thr,
                        line_width=line_width, font_size=font_size, show_labels=labels,
                        show_scores=conf)


class SegResult(_Result):
    """A semantic segmentation of one image.

    Attributes:
        sem_seg: (H, W) int64 class index per pixel of the input image.
        class_names, palette: the model's C classes and their RGB colours ((C, 3) uint8).
        image, path, frame, shape: as in :class:`DetResult`.
    """

    def __init__(self, sem_seg, class_names: Sequence[str], image: Optional[np.ndarray] = None,
                 path: Optional[str] = None, palette=None, frame: Optional[int] = None):
        sem_seg = np.asarray(sem_seg)
        if sem_seg.ndim == 3 and sem_seg.shape[0] == 1:
            sem_seg = sem_seg[0]
        if sem_seg.ndim != 2:
            raise ValueError(f'SegResult: sem_seg must be (H, W), got {sem_seg.shape}')
        self.sem_seg = sem_seg.astype(np.int64)
        super().__init__(image, path, self.sem_seg.shape, class_names, palette, frame)

    def __repr__(self) -> str:
        present = [self.class_names[c] for c in np.unique(self.sem_seg)
                   if 0 <= c < len(self.class_names)]
        where = f', frame {self.frame}' if self.frame is not None else ''
        return (f'SegResult(image {self.shape[0]}x{self.shape[1]}, classes present: '
                f'{present}, path={self.path!r}{where})')

    def class_pixels(self) -> dict:
        """``{class name: pixel count}`` for the classes present."""
        values, counts = np.unique(self.sem_seg, return_counts=True)
        return {self.class_names[v]: int(n) for v, n in zip(values, counts)
                if 0 <= v < len(self.class_names)}

    def mask(self, class_name: str) -> np.ndarray:
        """(H, W) bool: the pixels labelled ``class_name``."""
        if class_name not in self.class_names:
            raise KeyError(f'{class_name!r} is not one of the classes {self.class_names}')
        return self.sem_seg == self.class_names.index(class_name)

    def to_dict(self, with_map: bool = True) -> dict:
        """JSON-ready dict: ``{'path', 'height', 'width', ['frame'], 'class_pixels'}`` and,
        when ``with_map``, ``'sem_seg'`` as nested lists (H rows of W ints)."""
        out = self._where()
        out['class_pixels'] = self.class_pixels()
        if with_map:
            out['sem_seg'] = self.sem_seg.tolist()
        return out

    def plot(self, alpha: float = 0.5, legend=True, image: Optional[np.ndarray] = None,
             font_size: Optional[float] = None) -> np.ndarray:
        """RGB uint8 image with the class map blended in (``alpha``) and a legend of the
        classes present: beside the image (``legend=True`` / ``'outside'``, so the drawing is
        wider or taller than the image), ``'inside'`` (translucent, top-left) or False."""
        from densebox.visualization import draw_seg
        canvas = self._canvas() if image is None else image
        return draw_seg(canvas, self.sem_seg, self.class_names, palette=self.palette,
                        alpha=alpha, legend=legend, font_size=font_size)

"""Result objects of :func:`densebox.inference`: numpy fields, ``to_dict``, ``plot``, ``save``.

Both keep the RGB input image (``image``) so that ``plot`` can draw on it; pass
``keep_image=False`` to :func:`densebox.inference` to drop it when memory matters.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ['DetResult', 'SegResult']


def _palette(palette, num_classes: int) -> np.ndarray:
    from densebox.visualization import resolve_palette
    return resolve_palette(palette, num_classes)


class _Result:
    """Shared bits: the image, its path, its size."""

    def __init__(self, image: Optional[np.ndarray], path: Optional[str],
                 shape: Tuple[int, int], class_names: Sequence[str], palette=None):
        self.image = image
        self.path = path
        self.shape = (int(shape[0]), int(shape[1]))
        self.class_names = tuple(class_names)
        self.palette = _palette(palette, len(self.class_names))

    def _canvas(self) -> np.ndarray:
        if self.image is None:
            raise ValueError('this result holds no image (inference(..., keep_image=False)); '
                             'pass one: result.plot(image=...)')
        return self.image

    def save(self, path: str, **plot_kwargs) -> str:
        """Write :meth:`plot` to ``path`` (format from the extension); returns the path."""
        from densebox.visualization import save_image
        return save_image(path, self.plot(**plot_kwargs))


class DetResult(_Result):
    """Detections in one image.

    Attributes:
        boxes: (N, 4) float32 xyxy in pixels of the input image.
        scores: (N,) float32, highest first.
        labels: (N,) int64 indices into ``class_names``.
        class_names: the model's C class names.
        image: (H, W, 3) uint8 RGB input image, or None.
        path: the image file, or None for in-memory inputs.
        shape: (H, W) of the input image.
        score_thr: default threshold of :meth:`plot` / :meth:`save`.
    """

    def __init__(self, boxes, scores, labels, class_names: Sequence[str],
                 image: Optional[np.ndarray] = None, path: Optional[str] = None,
                 shape: Optional[Tuple[int, int]] = None, palette=None, score_thr: float = 0.3):
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
        super().__init__(image, path, shape, class_names, palette)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f'DetResult: labels {self.labels.min()}..{self.labels.max()} do '
                             f'not index the {len(self.class_names)} class names')
        self.score_thr = float(score_thr)

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        above = int((self.scores >= self.score_thr).sum())
        return (f'DetResult({len(self)} boxes, {above} with score >= {self.score_thr}, '
                f'image {self.shape[0]}x{self.shape[1]}, path={self.path!r})')

    def filter(self, score_thr: float) -> 'DetResult':
        """A new result with the detections scoring at least ``score_thr``."""
        keep = self.scores >= score_thr
        return DetResult(self.boxes[keep], self.scores[keep], self.labels[keep],
                         self.class_names, self.image, self.path, self.shape, self.palette,
                         self.score_thr)

    @property
    def label_names(self) -> Tuple[str, ...]:
        """The class name of every detection."""
        return tuple(self.class_names[i] for i in self.labels)

    def to_dict(self, score_thr: Optional[float] = None) -> dict:
        """JSON-ready dict: ``{'path', 'height', 'width', 'boxes' [[x1, y1, x2, y2]],
        'scores', 'labels', 'label_names'}`` (detections scoring >= ``score_thr`` if given)."""
        res = self if score_thr is None else self.filter(score_thr)
        return dict(path=res.path, height=res.shape[0], width=res.shape[1],
                    boxes=res.boxes.tolist(), scores=res.scores.tolist(),
                    labels=res.labels.tolist(), label_names=list(res.label_names))

    def plot(self, score_thr: Optional[float] = None, image: Optional[np.ndarray] = None
             ) -> np.ndarray:
        """(H, W, 3) uint8 RGB image with the boxes scoring >= ``score_thr`` (default
        ``self.score_thr``) drawn with "name score" tags."""
        from densebox.visualization import draw_det
        canvas = self._canvas() if image is None else image
        thr = self.score_thr if score_thr is None else score_thr
        return draw_det(canvas, self.boxes, self.labels, self.scores,
                        class_names=self.class_names, palette=self.palette, score_thr=thr)


class SegResult(_Result):
    """A semantic segmentation of one image.

    Attributes:
        sem_seg: (H, W) int64 class index per pixel of the input image.
        class_names, palette: the model's C classes and their RGB colours ((C, 3) uint8).
        image, path, shape: as in :class:`DetResult`.
    """

    def __init__(self, sem_seg, class_names: Sequence[str], image: Optional[np.ndarray] = None,
                 path: Optional[str] = None, palette=None):
        sem_seg = np.asarray(sem_seg)
        if sem_seg.ndim == 3 and sem_seg.shape[0] == 1:
            sem_seg = sem_seg[0]
        if sem_seg.ndim != 2:
            raise ValueError(f'SegResult: sem_seg must be (H, W), got {sem_seg.shape}')
        self.sem_seg = sem_seg.astype(np.int64)
        super().__init__(image, path, self.sem_seg.shape, class_names, palette)

    def __repr__(self) -> str:
        present = [self.class_names[c] for c in np.unique(self.sem_seg)
                   if 0 <= c < len(self.class_names)]
        return (f'SegResult(image {self.shape[0]}x{self.shape[1]}, classes present: '
                f'{present}, path={self.path!r})')

    def class_pixels(self) -> dict:
        """``{class name: pixel count}`` for the classes present."""
        values, counts = np.unique(self.sem_seg, return_counts=True)
        return {self.class_names[v]: int(n) for v, n in zip(values, counts)
                if 0 <= v < len(self.class_names)}

    def to_dict(self, with_map: bool = True) -> dict:
        """JSON-ready dict: ``{'path', 'height', 'width', 'class_pixels'}`` and, when
        ``with_map``, ``'sem_seg'`` as nested lists (H rows of W ints)."""
        out = dict(path=self.path, height=self.shape[0], width=self.shape[1],
                   class_pixels=self.class_pixels())
        if with_map:
            out['sem_seg'] = self.sem_seg.tolist()
        return out

    def plot(self, alpha: float = 0.5, legend: bool = True,
             image: Optional[np.ndarray] = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB image with the class map blended in (``alpha``) and a legend."""
        from densebox.visualization import draw_seg
        canvas = self._canvas() if image is None else image
        return draw_seg(canvas, self.sem_seg, self.class_names, palette=self.palette,
                        alpha=alpha, legend=legend)

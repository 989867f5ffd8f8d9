"""The palettes of the data sets densebox knows, by class name: one colour per class
across detection and segmentation (:func:`known_palette`)."""
from typing import Optional, Sequence

__all__ = ['known_palette']


# The segmentation data sets whose colours detection data sets share, by registered name
# (looked up in the registry: these modules import base_det, which uses this one).
SEGMENTATION_DATASETS = ('VOCSegDataset', 'ShapesSegDataset', 'CityscapesDataset',
                         'ADE20KDataset')


def _segmentation_palettes():
    """(class names, RGB palette) of the segmentation data sets densebox knows."""
    from densebox.registry import DATASETS
    found = []
    for name in SEGMENTATION_DATASETS:
        meta = DATASETS.get(name).METAINFO
        found.append((meta['classes'], list(meta['palette'])))
    return found


def known_palette(class_names: Sequence[str]) -> Optional[list]:
    """The colours of a data set densebox knows whose classes include all ``class_names``,
    matched by name; None when no such data set exists.

    This is what keeps one palette per data set across tasks: VOC detection's 20 classes
    get the colours of VOC segmentation (whose index 0 is ``background``), the shapes
    detector those of the shapes segmenter, so a class has one colour in box and mask
    drawings.
    """
    names = [str(n) for n in class_names]
    if not names:
        return None
    for known, palette in _segmentation_palettes():
        index = {name: i for i, name in enumerate(known)}
        if all(n in index for n in names):
            return [tuple(int(v) for v in palette[index[n]]) for n in names]
    return None

"""Counting what a data set's parser changes or drops, and saying it once in the log.

A parser calls :meth:`AnnotationReport.add` for every box it clips or drops (and for every
other entry it changes), with the file, the annotation's id and a reason; the data set
logs :meth:`AnnotationReport.summary` once after parsing: one line per reason with its
count and the first few examples. Nothing is changed silently.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from mmengine.logging import print_log

Example = Tuple[str, object, str]  # (file, annotation id, detail)


class AnnotationReport:
    """Counts and examples of changed or dropped annotations of one data set.

    Args:
        source: what the report is about, e.g. ``'CocoDetDataset(instances_train.json)'``.
        max_examples: examples kept per reason.
    """

    def __init__(self, source: str, max_examples: int = 3):
        self.source = source
        self.max_examples = max_examples
        self.counts: Dict[str, int] = OrderedDict()
        self.examples: Dict[str, List[Example]] = OrderedDict()

    def add(self, reason: str, file: str, ann_id: object, detail: str = '') -> None:
        """Record one annotation changed or dropped for ``reason`` (a short phrase, e.g.
        ``'boxes clipped to the image'``)."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < self.max_examples:
            examples.append((file, ann_id, detail))

    def count(self, reason: str) -> int:
        """How many annotations were recorded for ``reason`` (0 if none)."""
        return self.counts.get(reason, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> Optional[str]:
        """The multi-line report, or None when nothing was changed."""
        if not self.counts:
            return None
        lines = [f'{self.source}: {self.total} annotations were changed or dropped while '
                 'parsing:']
        for reason, count in self.counts.items():
            shown = '; '.join(f'{file} id {ann_id}' + (f' ({detail})' if detail else '')
                              for file, ann_id, detail in self.examples[reason])
            more = ', ...' if count > len(self.examples[reason]) else ''
            lines.append(f'  {count} {reason}, e.g. {shown}{more}')
        return '\n'.join(lines)

    def log(self) -> None:
        """Write :meth:`summary` to the current mmengine logger (as a warning)."""
        text = self.summary()
        if text is not None:
            print_log(text, logger='current', level=30)  # logging.WARNING

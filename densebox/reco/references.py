"""ReCo's per-concept references, on disk.

A reference file holds, for each class name, the reference embedding (co-segmentation of
its retrieved images, in the dense extractor's space) and its prompt-ensembled text embedding
(in the MaskCLIP CLIP's space), plus the settings that made them::

    {'format': 'densebox-reco-references', 'version': 1,
     'classes': [names], 'references': (K, C) float32, 'text': (K, D) float32,
     'meta': JSON string: extractor, dense_clip, retrieval (CLIP + index), k, templates digest,
             language_guidance, context_elimination, context_classes}

It is a plain ``torch.save`` of tensors and strings, read back with ``weights_only=True``.
:meth:`ReferenceSet.check` compares the stored settings with the ones in use and raises a
``ValueError`` naming each difference (another extractor or CLIP, another k ...).
"""
import json
import os.path as osp
from typing import List, Optional, Sequence

import torch

__all__ = ['ReferenceSet', 'FORMAT']

FORMAT = 'densebox-reco-references'
VERSION = 1


class ReferenceSet:
    """Reference and text embeddings of a list of classes.

    Args:
        classes: K names.
        references: (K, C) unit vectors.
        text: (K, D) unit vectors.
        meta: the settings that made them (JSON-able).
    """

    def __init__(self, classes: Sequence[str], references: torch.Tensor, text: torch.Tensor,
                 meta: dict):
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f'ReferenceSet: duplicate class names in {classes}')
        if references.shape[0] != len(classes) or text.shape[0] != len(classes):
            raise ValueError(f'ReferenceSet: {len(classes)} classes but {references.shape[0]} '
                             f'references and {text.shape[0]} text embeddings')
        self.classes = classes
        self.references = references.detach().float().cpu()
        self.text = text.detach().float().cpu()
        self.meta = json.loads(json.dumps(meta))

    def __len__(self) -> int:
        return len(self.classes)

    def __contains__(self, name: str) -> bool:
        return name in self.classes

    def select(self, classes: Sequence[str]) -> 'ReferenceSet':
        """The references of ``classes`` in that order (a ``KeyError`` names missing ones)."""
        missing = [c for c in classes if c not in self.classes]
        if missing:
            raise KeyError(f'no references for {missing}; these have references: '
                           f'{self.classes}')
        idx = torch.tensor([self.classes.index(c) for c in classes], dtype=torch.long)
        return ReferenceSet(list(classes), self.references[idx], self.text[idx], self.meta)

    def merged(self, other: 'ReferenceSet') -> 'ReferenceSet':
        """This set plus the classes of ``other`` it lacks (same settings required)."""
        self.check(other.meta, what='the references to merge')
        new = [c for c in other.classes if c not in self.classes]
        if not new:
            return self
        extra = other.select(new)
        return ReferenceSet(self.classes + new, torch.cat([self.references, extra.references]),
                            torch.cat([self.text, extra.text]), self.meta)

    def check(self, expected: dict, where: str = 'the references',
              what: str = 'the model') -> None:
        """Raise a ``ValueError`` naming every setting of ``expected`` stored differently."""
        expected = json.loads(json.dumps(expected))
        diffs = _differences(self.meta, expected)
        if diffs:
            raise ValueError(f'{where} were made with other settings than {what} uses: '
                             + '; '.join(diffs) + '. Compute references with this model '
                             '(tools/reco.py refs) or use the matching model.')

    # ------------------------------------------------------------------ files
    def save(self, path: str) -> str:
        from densebox.engine.checkpoint import atomic_save_checkpoint
        atomic_save_checkpoint(dict(format=FORMAT, version=VERSION, classes=self.classes,
                                    references=self.references, text=self.text,
                                    meta=json.dumps(self.meta, sort_keys=True)), path)
        return path

    @classmethod
    def load(cls, path: str, expected_meta: Optional[dict] = None) -> 'ReferenceSet':
        from densebox.engine.checkpoint import safe_torch_load
        if not osp.isfile(path):
            raise FileNotFoundError(f'ReCo references {path} not found; make them with '
                                    f'python tools/reco.py refs --index INDEX --classes ... '
                                    f'--out {path}')
        data = safe_torch_load(path, map_location='cpu')
        if not isinstance(data, dict) or data.get('format') != FORMAT:
            raise ValueError(f'{path} is not a densebox ReCo reference file')
        if data.get('version') != VERSION:
            raise ValueError(f'{path}: reference file version {data.get("version")} '
                             f'(this densebox reads {VERSION})')
        refs = cls(data['classes'], data['references'], data['text'], json.loads(data['meta']))
        if expected_meta is not None:
            refs.check(expected_meta, where=f'the references in {path}')
        return refs


def _differences(stored: dict, expected: dict, prefix: str = '') -> List[str]:
    out = []
    for key, value in expected.items():
        name = prefix + key
        if isinstance(value, dict) and isinstance(stored.get(key), dict):
            out += _differences(stored[key], value, name + '.')
        elif stored.get(key) != value:
            out.append(f'{name}: stored {stored.get(key)!r}, in use {value!r}')
    return out

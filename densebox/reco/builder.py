"""Computing ReCo references: retrieve, extract, co-segment (see :mod:`densebox.reco.coseg`).

For each concept: its prompt-ensembled text embedding from the retrieval CLIP picks the k
nearest images of the index; they are resized (shorter side 224) and centre-cropped, their
dense features come from the extractor, and co-segmentation (with language guidance from the
MaskCLIP map and the text embedding of the MaskCLIP CLIP, and context elimination by the
references of the context concepts, computed first and in order) gives the reference.
Concepts that are context concepts reuse those references; ``aliases`` map a concept to
another one's reference (ReCo: vegetation -> tree).
"""
import hashlib
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from densebox.models.backbones.maskclip import MaskCLIP
from .coseg import context_weights, cosegment, language_guidance
from .fingerprint import weights_digest
from .index import ImageIndex, load_rgb_224
from .prompts import RECO_TEMPLATES, prompt_ensemble
from .references import ReferenceSet

__all__ = ['TextEncoder', 'ReferenceBuilder', 'CONTEXT_CLASSES', 'reference_settings']

CONTEXT_CLASSES = ('tree', 'sky', 'building', 'road', 'person')


class TextEncoder:
    """Prompt-ensembled, cached text embeddings of one CLIP.

    Args:
        clip: an ``open_clip.CLIP``.
        tokenizer: its tokenizer (``list of str -> LongTensor``).
        templates: prompt templates.
    """

    def __init__(self, clip: nn.Module, tokenizer, templates: Sequence[str] = RECO_TEMPLATES):
        self.clip, self.tokenizer, self.templates = clip, tokenizer, tuple(templates)
        self._cache: Dict[str, torch.Tensor] = {}

    def __call__(self, classes: Sequence[str]) -> torch.Tensor:
        """(K, D) unit embeddings."""
        if not classes:
            raise ValueError('the class list is empty')
        new = [c for c in dict.fromkeys(classes) if c not in self._cache]
        if new:
            device = next(self.clip.parameters()).device
            emb = prompt_ensemble(self.clip.encode_text, self.tokenizer, new, self.templates,
                                  device=device)
            self._cache.update({c: e.cpu() for c, e in zip(new, emb)})
        return torch.stack([self._cache[c] for c in classes])

    def templates_digest(self) -> str:
        return hashlib.sha1('\n'.join(self.templates).encode()).hexdigest()[:16]


class ReferenceBuilder:
    """Everything that computes references.

    Args:
        dense_clip: CLIP ResNet for the MaskCLIP guidance (and its text embeddings).
        dense_text: :class:`TextEncoder` of ``dense_clip``.
        extractor: dense feature extractor (``describe()``-able module).
        index: :class:`ImageIndex` to retrieve from.
        retrieval_text: :class:`TextEncoder` of the CLIP that built the index.
        k: images retrieved per concept (ReCo: 50).
        image_size: side of the retrieved images after resize + centre crop (224).
        language_guidance / context_elimination: ReCo's two refinements.
        context_classes: concepts whose references are subtracted as context.
        aliases: ``{concept: concept whose reference it takes}``.
        temperature: of the language guidance sigmoid (10).
        batch_size: retrieved images per extractor call.
        names: ``{'dense_clip': ..., 'retrieval_clip': ...}`` for messages and the metadata.
    """

    def __init__(self, dense_clip: nn.Module, dense_text: TextEncoder, extractor: nn.Module,
                 index: ImageIndex, retrieval_text: TextEncoder, k: int = 50,
                 image_size: int = 224, language_guidance: bool = True,
                 context_elimination: bool = True,
                 context_classes: Sequence[str] = CONTEXT_CLASSES,
                 aliases: Optional[Dict[str, str]] = None, temperature: float = 10.0,
                 batch_size: int = 16, names: Optional[dict] = None):
        if int(k) < 1:
            raise ValueError(f'k (images retrieved per concept) must be >= 1, got {k}')
        self.maskclip = MaskCLIP(dense_clip)
        self.dense_clip = dense_clip
        self.dense_text, self.retrieval_text = dense_text, retrieval_text
        self.extractor, self.index = extractor, index
        self.k, self.image_size = int(k), int(image_size)
        self.use_guidance, self.use_context = bool(language_guidance), bool(context_elimination)
        self.context_classes = tuple(context_classes) if context_elimination else ()
        self.aliases = dict(aliases or {})
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)
        self.names = dict(names or {})
        self._context: Dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.dense_clip.parameters()).device

    def settings(self) -> dict:
        """What references made by this builder record (and are checked against)."""
        settings = reference_settings(self.extractor, self.dense_clip, self.dense_text,
                                  self.use_guidance,
                                  self.use_context, self.context_classes, self.temperature,
                                  retrieval=dict(clip=self.index.meta['clip'],
                                                 index_files_digest=self.index.meta['files_digest'],
                                                 k=self.k, image_size=self.image_size),
                                  aliases=self.aliases)
        settings['names'] = dict(self.names)  # for people; not compared
        return settings

    # ------------------------------------------------------------------ steps
    def retrieve(self, concept: str) -> List[str]:
        """Paths of the ``k`` images nearest to the concept's text embedding."""
        if len(self.index) == 0:
            raise ValueError(f'concept {concept!r}: no images retrieved: the index '
                             f'{self.index.root} holds no images')
        paths, _ = self.index.topk(self.retrieval_text([concept])[0], self.k)
        return paths

    def _load(self, concept: str, paths: Sequence[str]) -> torch.Tensor:
        images, failed = [], []
        for p in paths:
            try:
                images.append(load_rgb_224(p, self.image_size))
            except Exception as err:
                failed.append(f'{p} ({type(err).__name__}: {err})')
        if not images:
            raise ValueError(f'concept {concept!r}: none of its {len(paths)} retrieved images '
                             f'could be read: {failed[:3]}')
        if failed:
            import warnings
            warnings.warn(f'concept {concept!r}: {len(failed)} retrieved images could not be '
                          f'read and are left out: {failed[:3]}')
        return torch.stack(images)

    @torch.no_grad()
    def _features(self, images: torch.Tensor, text: torch.Tensor):
        feats, guidance = [], []
        for start in range(0, len(images), self.batch_size):
            x = images[start:start + self.batch_size].to(self.device)
            f = self.extractor(x)
            feats.append(f)
            if self.use_guidance:
                guidance.append(language_guidance(self.maskclip(x), text.to(x.device),
                                                  self.temperature, size=f.shape[-2:]))
        features = torch.cat(feats)
        weights = torch.cat(guidance) if guidance else None
        return features, weights

    @torch.no_grad()
    def _cosegment(self, concept: str, context: Dict[str, torch.Tensor]):
        images = self._load(concept, self.retrieve(concept))
        features, weights = self._features(images, self.dense_text([concept])[0])
        if weights is None:
            weights = features.new_ones((features.shape[0],) + tuple(features.shape[-2:]))
        if self.use_context and context:
            weights = weights * context_weights(features, torch.stack(list(context.values())))
        reference, _ = cosegment(features, weights)
        return reference.cpu()

    def context_references(self) -> Dict[str, torch.Tensor]:
        """The context concepts' references, in order, each eliminating the ones before."""
        if self.use_context and len(self._context) < len(self.context_classes):
            for name in self.context_classes:
                if name not in self._context:
                    self._context[name] = self._cosegment(name, dict(self._context))
        return dict(self._context)

    def reference(self, concept: str) -> torch.Tensor:
        context = self.context_references()
        target = self.aliases.get(concept, concept)
        if target in context:
            return context[target]
        if target != concept:
            return self.reference(target)
        return self._cosegment(concept, context)

    def build(self, classes: Sequence[str], progress: bool = False) -> ReferenceSet:
        """References of ``classes`` (K >= 1) as a :class:`ReferenceSet`."""
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError('ReCo references: the class list is empty')
        iterator = classes
        if progress:
            from tqdm import tqdm
            iterator = tqdm(classes, desc='ReCo references', unit='class')
        refs = torch.stack([self.reference(c) for c in iterator])
        return ReferenceSet(classes, refs, self.dense_text(classes), self.settings())


def reference_settings(extractor: nn.Module, dense_clip: nn.Module, dense_text: TextEncoder,
                       language_guidance: bool,
                       context_elimination: bool, context_classes: Sequence[str],
                       temperature: float, retrieval: Optional[dict] = None,
                       aliases: Optional[dict] = None) -> dict:
    """The settings a reference file records. Without ``retrieval``: the part a segmenter
    can check without the index (extractor, MaskCLIP CLIP, prompts, refinements)."""
    settings = dict(extractor=extractor.describe(),
                    dense_clip=dict(weights=weights_digest(dense_clip)),
                    templates=dense_text.templates_digest(),
                    language_guidance=bool(language_guidance),
                    context_elimination=bool(context_elimination),
                    context_classes=list(context_classes) if context_elimination else [],
                    temperature=float(temperature))
    if retrieval is not None:
        settings['retrieval'] = retrieval
        settings['aliases'] = dict(aliases or {})
    return settings

"""ReCo: zero-shot semantic segmentation by retrieval and co-segmentation (training-free).

``ReCoSegmentor`` is an ordinary densebox model: ``predict`` gives samples with
``seg_logits`` (K, H, W) and ``pred_sem_seg`` in original-image pixels, so ``tools/test.py``,
the IoU metric and ``densebox.inference`` use it as they use any segmenter. Per image:

1. dense features of the extractor (DeiT-S/16-SIN, DINO ViT-S/16 or a CLIP stage);
2. ``sigmoid(cos(f, ref_k))`` for each class reference, resized to the input;
3. times the MaskCLIP guidance ``sigmoid(10 cos(MaskCLIP pixel, text_k))`` (optional);
4. optionally a dense CRF on ``log_softmax`` of the scores (pydensecrf), then arg-max.

References come from a file (``references=``, made by ``tools/reco.py refs``); with
``retrieval=dict(index=..., clip=...)`` the missing ones (the config's classes, or any class
list given to :meth:`set_classes` / ``densebox.inference(..., classes=[...])``) are computed
on the spot and added to that file. The stored settings (extractor, MaskCLIP CLIP, prompts,
refinements) must match the model's, else a ``ValueError`` names what differs.

Input: RGB in [0, 1] (the config's data preprocessor divides by 255); each network
normalises with its own statistics. (The reference code feeds ImageNet-normalised images to
MaskCLIP as well; densebox gives CLIP its own mean / std.)
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from densebox.registry import MODELS
from densebox.structures import SegDataSample
from .encoder_decoder import EncoderDecoder

__all__ = ['ReCoSegmentor']


@MODELS.register_module()
class ReCoSegmentor(BaseModel):
    """ReCo zero-shot segmenter.

    Args:
        clip: ``build_clip`` arguments of the MaskCLIP CLIP (a ResNet: RN50x16 in ReCo), e.g.
            ``dict(model_name='RN50x16', checkpoint='clip_rn50x16_openai')``.
        extractor: dense feature extractor config (:func:`densebox.reco.build_extractor`).
        classes: the class names predicted (index = label).
        references: reference file path (read if it exists; written when references are
            computed here).
        retrieval: optional ``dict(index=PATH, clip=dict(build_clip args), k=50,
            image_size=224, batch_size=16)`` to compute missing references.
        dense_clip_inference: multiply the scores by the MaskCLIP guidance at inference.
        language_guidance / context_elimination / context_classes / aliases / temperature:
            ReCo's co-segmentation settings (used when computing references, and checked
            against a reference file).
        crf: apply a dense CRF to the scores (needs ``pydensecrf``).
        crf_cfg: CRF parameters (ReCo's: 10 iterations, Gaussian sxy 1 compat 3,
            bilateral sxy 67 srgb 3 compat 4).
        templates: prompt templates (default: the 85 of :mod:`densebox.reco.prompts`).
        output_classes / output_mapping: predict ``classes`` but output coarser classes:
            ``output_mapping[k]`` is the output class of class k (COCO-Stuff: 171 -> 27).
            An output class's score is the maximum of its classes' scores, so the output
            label is the mapped arg-max (ReCo maps the arg-max).
        align_corners: for the final resize to the original image.
    """

    task = 'seg'  # no decode_head: tools ask this (densebox.test_options.model_task)
    training_free = True  # tools/test.py needs no checkpoint

    def __init__(self, clip: dict, extractor: dict, classes: Sequence[str],
                 references: Optional[str] = None, retrieval: Optional[dict] = None,
                 dense_clip_inference: bool = True, language_guidance: bool = True,
                 context_elimination: bool = True,
                 context_classes: Sequence[str] = ('tree', 'sky', 'building', 'road', 'person'),
                 aliases: Optional[Dict[str, str]] = None, temperature: float = 10.0,
                 crf: bool = False, crf_cfg: Optional[dict] = None,
                 templates: Optional[Sequence[str]] = None,
                 output_classes: Optional[Sequence[str]] = None,
                 output_mapping: Optional[Sequence[int]] = None, align_corners: bool = False,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        classes = [str(c) for c in (classes or [])]
        if not classes:
            raise ValueError('ReCoSegmentor: the class list is empty (set model.classes)')
        from densebox.models.backbones.clip import build_clip, clip_tokenizer
        from densebox.models.backbones.maskclip import MaskCLIP
        from densebox.reco import RECO_TEMPLATES, TextEncoder, build_extractor
        self.clip_cfg = dict(clip)
        self.clip = build_clip(**self.clip_cfg).eval().requires_grad_(False)
        self.maskclip = MaskCLIP(self.clip)
        self.tokenizer = clip_tokenizer(self.clip_cfg.get('model_name'),
                                        context_length=self.clip.context_length)
        self.text = TextEncoder(self.clip, self.tokenizer, templates or RECO_TEMPLATES)
        self.extractor = build_extractor(extractor, clip=self.clip).eval().requires_grad_(False)
        self.references_path = references
        self.retrieval_cfg = dict(retrieval) if retrieval else None
        self.dense_clip_inference = bool(dense_clip_inference)
        self.language_guidance = bool(language_guidance)
        self.context_elimination = bool(context_elimination)
        self.context_classes = tuple(context_classes)
        self.aliases = dict(aliases or {})
        self.temperature = float(temperature)
        self.crf = bool(crf)
        self.crf_cfg = dict(iterations=10, gaussian_sxy=1, gaussian_compat=3,
                            bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4,
                            **(crf_cfg or {}))
        self.align_corners = align_corners
        if (output_classes is None) != (output_mapping is None):
            raise ValueError('ReCoSegmentor: give output_classes and output_mapping together')
        self.output_classes = tuple(output_classes) if output_classes else None
        self.output_mapping = None
        if output_mapping is not None:
            self.output_mapping = torch.as_tensor(list(output_mapping), dtype=torch.long)
            if len(self.output_mapping) != len(classes):
                raise ValueError(f'ReCoSegmentor: output_mapping has {len(self.output_mapping)} '
                                 f'entries for {len(classes)} classes')
            bad = [int(v) for v in self.output_mapping
                   if not 0 <= int(v) < len(self.output_classes)]
            if bad:
                raise ValueError(f'ReCoSegmentor: output_mapping values {bad[:5]} are not '
                                 f'indices of the {len(self.output_classes)} output_classes')
        self._configured_classes = [str(c) for c in classes]
        self._builder = None
        self._refs = None  # ReferenceSet of every class known so far
        self._prepared = None  # the classes whose embeddings are loaded
        if self.crf:
            _import_crf()
        self.set_classes(classes)

    # ------------------------------------------------------------------ references
    def expected_settings(self) -> dict:
        """The settings a reference file must have been made with."""
        from densebox.reco.builder import reference_settings
        return reference_settings(self.extractor, self.clip, self.text, self.language_guidance,
                                  self.context_elimination, self.context_classes,
                                  self.temperature)

    def _reference_set(self):
        from densebox.reco import ReferenceSet
        if self._refs is None and self.references_path and osp.isfile(self.references_path):
            self._refs = ReferenceSet.load(self.references_path, self.expected_settings())
        return self._refs

    def builder(self):
        """The :class:`~densebox.reco.ReferenceBuilder` of ``retrieval=`` (built once)."""
        if self._builder is None:
            if self.retrieval_cfg is None:
                return None
            from densebox.models.backbones.clip import build_clip, clip_tokenizer
            from densebox.reco import ImageIndex, ReferenceBuilder, TextEncoder
            cfg = dict(self.retrieval_cfg)
            clip_cfg = cfg.pop('clip', None)
            if clip_cfg is None or clip_cfg == self.clip_cfg:
                rclip, rname, rtok = self.clip, self.clip_cfg, self.tokenizer
            else:
                rclip = build_clip(**clip_cfg).eval().requires_grad_(False)
                rname = clip_cfg
                rtok = clip_tokenizer(clip_cfg.get('model_name'),
                                      context_length=rclip.context_length)
            index = ImageIndex(cfg.pop('index'), rclip, str(rname))
            self._builder = ReferenceBuilder(
                self.clip, self.text, self.extractor, index,
                TextEncoder(rclip, rtok, self.text.templates),
                language_guidance=self.language_guidance,
                context_elimination=self.context_elimination,
                context_classes=self.context_classes, aliases=self.aliases,
                temperature=self.temperature,
                names=dict(dense_clip=str(self.clip_cfg), retrieval_clip=str(rname)), **cfg)
        return self._builder

    def set_classes(self, classes: Sequence[str]) -> List[str]:
        """Predict ``classes`` from now on; returns the previous class list.

        References missing from the reference file are computed with ``retrieval=`` (on the
        model's device, at the next prediction or :meth:`prepare`, and added to the file);
        without ``retrieval=`` a ``KeyError`` names them now.
        """
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError('ReCoSegmentor: the class list is empty')
        if len(set(classes)) != len(classes):
            raise ValueError(f'ReCoSegmentor: duplicate class names in {classes}')
        refs = self._reference_set()
        missing = [c for c in classes if refs is None or c not in refs]
        if missing and self.retrieval_cfg is None:
            where = (f'the reference file {self.references_path}'
                     if self.references_path else 'no reference file (references=None)')
            raise KeyError(f'ReCoSegmentor: no references for {missing} in {where}, and no '
                           'retrieval index is configured to compute them (set '
                           'model.retrieval=dict(index=..., clip=...)) or run '
                           'tools/reco.py refs')
        previous = list(getattr(self, 'classes', []))
        self.classes = classes
        self._prepared = None
        return previous

    def prepare(self) -> None:
        """Load (and, with ``retrieval=``, compute) the references of the current classes."""
        if self._prepared == self.classes:
            return
        refs = self._reference_set()
        missing = [c for c in self.classes if refs is None or c not in refs]
        if missing:
            new = self.builder().build(missing)
            new.check(self.expected_settings(), where='new references', what='the model')
            refs = new if refs is None else refs.merged(new)
            self._refs = refs
            if self.references_path:
                refs.save(self.references_path)
        selected = refs.select(self.classes)
        self.ref_embeddings = selected.references.to(self._device())
        self.text_embeddings = selected.text.to(self._device())
        self._prepared = list(self.classes)

    def _device(self) -> torch.device:
        return next(self.clip.parameters()).device

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ------------------------------------------------------------------ inference
    def forward(self, inputs: torch.Tensor, data_samples: Optional[List] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            raise RuntimeError('ReCoSegmentor is training-free; to train a segmenter on its '
                               'predictions use ReCo+ (configs/reco_plus_*.py)')
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.scores(inputs)
        raise ValueError(f"ReCoSegmentor: mode must be 'predict' or 'tensor', got {mode!r}")

    @torch.no_grad()
    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, K, H, W) ReCo scores."""
        from densebox.reco.coseg import language_guidance, score_maps
        self.prepare()
        features = self.extractor(inputs)
        guidance = None
        if self.dense_clip_inference:
            guidance = language_guidance(self.maskclip(inputs), self.text_embeddings,
                                         self.temperature)
        return score_maps(features, self.ref_embeddings, guidance, size=inputs.shape[-2:])

    # padding / flip / resize back to the original image, as every densebox segmenter
    postprocess_result = EncoderDecoder.postprocess_result

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[SegDataSample]] = None) -> List[SegDataSample]:
        scores = self.scores(inputs)
        if self.crf:
            scores = self._apply_crf(inputs, scores)
        if self.output_mapping is not None and self.classes == self._configured_classes:
            # (a class list given at inference is predicted as it is)
            index = self.output_mapping.to(scores.device).view(1, -1, 1, 1).expand_as(scores)
            coarse = scores.new_full((scores.shape[0], len(self.output_classes))
                                     + tuple(scores.shape[2:]), float('-inf'))
            scores = coarse.scatter_reduce(1, index, scores, reduce='amax', include_self=True)
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(inputs.shape[0])]
        return self.postprocess_result(scores, data_samples)

    def _apply_crf(self, inputs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """ReCo's CRF: unary from softmax(log_softmax(scores)), on the uint8 image."""
        from densebox.reco.crf import dense_crf
        log_probs = torch.log_softmax(scores, dim=1)
        images = (inputs.clamp(0, 1) * 255).round().to(torch.uint8)
        out = [dense_crf(img.permute(1, 2, 0).cpu().numpy(), lp.cpu(), **self.crf_cfg)
               for img, lp in zip(images, log_probs)]
        return torch.stack(out).to(scores.device)


def _import_crf():
    from densebox.reco.crf import require_pydensecrf
    require_pydensecrf()

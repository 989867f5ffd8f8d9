"""ReCo (retrieve and co-segment) for zero-shot semantic segmentation: prompts, the image
index, dense feature extractors, co-segmentation, references. The segmenter itself is
``densebox.models.segmentors.ReCoSegmentor``; the command line is ``tools/reco.py``."""
from .builder import CONTEXT_CLASSES, ReferenceBuilder, TextEncoder, reference_settings
from .coseg import context_weights, cosegment, language_guidance, score_maps
from .extractors import CLIPImageFeatures, TimmViTFeatures, build_extractor
from .index import ImageIndex, build_image_index, list_images
from .prompts import IMAGENET_TEMPLATES, RECO_TEMPLATES, SCENE_TEMPLATES, prompt_ensemble
from .references import ReferenceSet

__all__ = ['CONTEXT_CLASSES', 'ReferenceBuilder', 'TextEncoder', 'reference_settings',
           'context_weights', 'cosegment', 'language_guidance', 'score_maps',
           'CLIPImageFeatures', 'TimmViTFeatures', 'build_extractor', 'ImageIndex',
           'build_image_index', 'list_images', 'IMAGENET_TEMPLATES', 'RECO_TEMPLATES',
           'SCENE_TEMPLATES', 'prompt_ensemble', 'ReferenceSet']

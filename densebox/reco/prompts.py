"""Prompt-ensembled CLIP text embeddings of class names.

A class name is put into each of :data:`IMAGENET_TEMPLATES`, every prompt is encoded by the
CLIP text tower and L2-normalised, the prompts are averaged and the mean is normalised again
(CLIP's zero-shot ImageNet recipe, as ReCo and MaskCLIP use it).

The templates are data: the 80 ImageNet templates published with CLIP (its
"Prompt Engineering for ImageNet" notebook) followed by the 5 scene templates MaskCLIP added,
85 in all: the list ReCo's ``extract_text_embeddings.py`` uses.
"""
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ['IMAGENET_TEMPLATES', 'SCENE_TEMPLATES', 'RECO_TEMPLATES', 'prompt_ensemble']

IMAGENET_TEMPLATES = (
    'a bad photo of a {}.', 'a photo of many {}.', 'a sculpture of a {}.',
    'a photo of the hard to see {}.', 'a low resolution photo of the {}.', 'a rendering of a {}.',
    'graffiti of a {}.', 'a bad photo of the {}.', 'a cropped photo of the {}.',
    'a tattoo of a {}.', 'the embroidered {}.', 'a photo of a hard to see {}.',
    'a bright photo of a {}.', 'a photo of a clean {}.', 'a photo of a dirty {}.',
    'a dark photo of the {}.', 'a drawing of a {}.', 'a photo of my {}.', 'the plastic {}.',
    'a photo of the cool {}.', 'a close-up photo of a {}.', 'a black and white photo of the {}.',
    'a painting of the {}.', 'a painting of a {}.', 'a pixelated photo of the {}.',
    'a sculpture of the {}.', 'a bright photo of the {}.', 'a cropped photo of a {}.',
    'a plastic {}.', 'a photo of the dirty {}.', 'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.', 'a photo of the {}.', 'a good photo of the {}.',
    'a rendering of the {}.', 'a {} in a video game.', 'a photo of one {}.', 'a doodle of a {}.',
    'a close-up photo of the {}.', 'a photo of a {}.', 'the origami {}.',
    'the {} in a video game.', 'a sketch of a {}.', 'a doodle of the {}.', 'a origami {}.',
    'a low resolution photo of a {}.', 'the toy {}.', 'a rendition of the {}.',
    'a photo of the clean {}.', 'a photo of a large {}.', 'a rendition of a {}.',
    'a photo of a nice {}.', 'a photo of a weird {}.', 'a blurry photo of a {}.',
    'a cartoon {}.', 'art of a {}.', 'a sketch of the {}.', 'a embroidered {}.',
    'a pixelated photo of a {}.', 'itap of the {}.', 'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.', 'a plushie {}.', 'a photo of the nice {}.',
    'a photo of the small {}.', 'a photo of the weird {}.', 'the cartoon {}.', 'art of the {}.',
    'a drawing of the {}.', 'a photo of the large {}.', 'a black and white photo of a {}.',
    'the plushie {}.', 'a dark photo of a {}.', 'itap of a {}.', 'graffiti of the {}.',
    'a toy {}.', 'itap of my {}.', 'a photo of a cool {}.', 'a photo of a small {}.',
    'a tattoo of the {}.',
)
SCENE_TEMPLATES = (
    'there is a {} in the scene.', 'there is the {} in the scene.', 'this is a {} in the scene.',
    'this is the {} in the scene.', 'this is one {} in the scene.',
)
RECO_TEMPLATES = IMAGENET_TEMPLATES + SCENE_TEMPLATES


@torch.no_grad()
def prompt_ensemble(encode_text: Callable[[torch.Tensor], torch.Tensor],
                    tokenizer: Callable[[Sequence[str]], torch.Tensor],
                    classes: Sequence[str], templates: Sequence[str] = RECO_TEMPLATES,
                    device='cpu', batch_size: int = 1024) -> torch.Tensor:
    """(K, D) unit text embeddings of ``classes``, one per class.

    Args:
        encode_text: the CLIP text tower, ``LongTensor (N, L) -> (N, D)``.
        tokenizer: ``list of N strings -> LongTensor (N, L)``.
        classes: K class names.
        templates: prompts with one ``{}`` each.
        batch_size: prompts per text-tower call.
    """
    if not classes:
        raise ValueError('prompt_ensemble: the class list is empty')
    bad = [t for t in templates if t.count('{}') != 1]
    if not templates or bad:
        raise ValueError(f'prompt_ensemble: every template needs exactly one "{{}}"; got {bad[:3]}'
                         if bad else 'prompt_ensemble: no templates')
    prompts = [t.format(c) for c in classes for t in templates]
    tokens = tokenizer(prompts)
    embeddings = torch.cat([encode_text(tokens[i:i + batch_size].to(device)).float()
                            for i in range(0, len(prompts), batch_size)])
    embeddings = F.normalize(embeddings, dim=-1).view(len(classes), len(templates), -1)
    return F.normalize(embeddings.mean(dim=1), dim=-1)

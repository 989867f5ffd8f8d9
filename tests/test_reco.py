"""ReCo: prompts, co-segmentation arithmetic against plain re-statements, a constructed
colour world whose dense features are known (retrieval, co-segmentation, language guidance
and context elimination must pick the right regions), the resumable index, reference files
and their mismatch errors, and a tiny random CLIP through the segmenter, densebox.inference
and tools/test.py. No pretrained weights."""
import os
import os.path as osp

import numpy as np
import open_clip
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from densebox.models.backbones.clip import build_clip, clip_tokenizer
from densebox.reco import (IMAGENET_TEMPLATES, RECO_TEMPLATES, SCENE_TEMPLATES, ImageIndex,
                           ReferenceBuilder, ReferenceSet, TextEncoder, build_image_index,
                           context_weights, cosegment, language_guidance, prompt_ensemble,
                           score_maps)
from densebox.reco.index import load_rgb_224

TINY_RN = dict(embed_dim=32,
               vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=8, patch_size=None),
               text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))

# ----------------------------------------------------------------------------- prompts


def test_templates_are_clips_80_plus_maskclips_5():
    assert len(IMAGENET_TEMPLATES) == 80 and len(SCENE_TEMPLATES) == 5
    assert len(RECO_TEMPLATES) == 85 == len(set(RECO_TEMPLATES))
    assert all(t.count('{}') == 1 for t in RECO_TEMPLATES)
    assert IMAGENET_TEMPLATES[0] == 'a bad photo of a {}.'
    assert IMAGENET_TEMPLATES[-1] == 'a tattoo of the {}.'


def test_prompt_ensemble_is_the_normalised_mean_of_normalised_prompts():
    torch.manual_seed(0)
    table = torch.randn(1000, 8)

    def tokenizer(texts):
        return torch.tensor([[hash(t) % 1000] for t in texts])

    def encode(tokens):
        return table[tokens[:, 0]] * 3.0

    templates = ('a {}.', 'the {} here.', 'one {}.')
    got = prompt_ensemble(encode, tokenizer, ['cat', 'dog'], templates, batch_size=2)
    for row, name in zip(got, ['cat', 'dog']):
        prompts = F.normalize(encode(tokenizer([t.format(name) for t in templates])), dim=-1)
        torch.testing.assert_close(row, F.normalize(prompts.mean(0), dim=0))
    with pytest.raises(ValueError, match='class list is empty'):
        prompt_ensemble(encode, tokenizer, [], templates)


# ----------------------------------------------------------------------------- arithmetic
def _naive_cosegment(features, weights):
    """The paper's definition with the full N x N adjacency."""
    n, c, h, w = features.shape
    f = F.normalize(features.permute(0, 2, 3, 1).reshape(-1, c), dim=1)
    adj = (f @ f.T) * weights.reshape(-1)[None]
    per_image = torch.stack([adj[:, m * h * w:(m + 1) * h * w].max(1).values
                             for m in range(n)], 1)
    avg = per_image.mean(1).view(n, h * w)
    best = avg.argmax(1)
    seeds = torch.stack([best // w, best % w], 1)
    feats = torch.stack([features[m, :, seeds[m, 0], seeds[m, 1]] for m in range(n)])
    return F.normalize(feats.mean(0), dim=0), seeds


def test_cosegment_equals_the_paper_definition():
    torch.manual_seed(0)
    features = torch.randn(5, 6, 3, 4)
    weights = torch.rand(5, 3, 4)
    ref, seeds = cosegment(features, weights, images_per_block=2)
    want_ref, want_seeds = _naive_cosegment(features, weights)
    assert torch.equal(seeds, want_seeds)
    torch.testing.assert_close(ref, want_ref)
    with pytest.raises(ValueError, match='weights must be'):
        cosegment(features, torch.rand(5, 3, 3))


def test_score_maps_and_weights_match_their_formulas():
    torch.manual_seed(1)
    feats, refs = torch.randn(2, 4, 3, 3), torch.randn(3, 4)
    dense, text = torch.randn(2, 5, 3, 3), torch.randn(3, 5)
    guidance = language_guidance(dense, text)
    cos = F.cosine_similarity(dense[:, None], text[None, :, :, None, None], dim=2)
    torch.testing.assert_close(guidance, torch.sigmoid(10 * cos))
    ctx = context_weights(feats, refs[:2])
    cos_f = F.cosine_similarity(feats[:, None], refs[None, :2, :, None, None], dim=2)
    torch.testing.assert_close(ctx, (1 - torch.sigmoid(cos_f)).prod(1))
    scores = score_maps(feats, refs, guidance)
    cos_r = F.cosine_similarity(feats[:, None], refs[None, :, :, None, None], dim=2)
    torch.testing.assert_close(scores, torch.sigmoid(cos_r) * guidance)
    assert score_maps(feats, refs, guidance, size=(6, 6)).shape == (2, 3, 6, 6)


# ----------------------------------------------------------------------------- colour world
# Images are 32x32 colour blocks; the "extractor" averages 8x8 patches, so a pixel's
# feature is its colour. Every image holds a large patch of one identical blue (the context)
# and a smaller patch of a red that varies from image to image (the concept).
RED, BLUE = np.array([230, 20, 20]), np.array([0, 0, 255])


def _colour_image(rng, red_area: int):
    img = np.zeros((32, 32, 3), np.uint8)
    img[:] = (0, 200, 0) if rng.random() < 0.5 else (200, 200, 200)
    img[:, 16:] = BLUE  # identical everywhere: the strongest common pattern
    shade = RED + rng.integers(-20, 20, 3)
    img[0:8 * red_area, 0:8] = np.clip(shade, 0, 255)
    return img


class ColourFeatures(nn.Module):
    """Dense features = the mean colour of each 8x8 patch, (B, 3, H/8, W/8)."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives it a device and a digest

    def forward(self, x):
        return F.avg_pool2d(x, 8)

    def describe(self):
        return dict(type='ColourFeatures')


class ColourCLIP(nn.Module):
    """A stand-in CLIP for retrieval: an image's embedding is its share of red, blue and
    green pixels; the text of a prompt is the one-hot of the colour word it contains."""
    WORDS = ('red', 'blue', 'green')

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def encode_image(self, x):
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        rgb = x * std + mean
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        red = ((r > 0.6) & (g < 0.3) & (b < 0.3)).float().mean((1, 2))
        blue = ((b > 0.8) & (r < 0.2)).float().mean((1, 2))
        green = ((g > 0.6) & (r < 0.3)).float().mean((1, 2))
        return torch.stack([red, blue, green], 1) + 1e-3

    def encode_text(self, tokens):
        return F.one_hot(tokens[:, 0], 3).float()

    @classmethod
    def tokenizer(cls, texts):
        return torch.tensor([[next(i for i, w in enumerate(cls.WORDS) if w in t)]
                             for t in texts])


@pytest.fixture(scope='module')
def colour_world(tmp_path_factory):
    root = tmp_path_factory.mktemp('colours')
    rng = np.random.default_rng(0)
    red_areas = {}
    for i in range(12):
        area = int(rng.integers(1, 4)) if i < 8 else 0  # 4 images without red
        img = _colour_image(rng, area)
        Image.fromarray(img).save(root / f'img_{i:02d}.png')
        red_areas[f'img_{i:02d}.png'] = area
    clip = ColourCLIP()
    build_image_index(str(root), str(root / 'index'), clip, 'colours', image_size=32,
                      batch_size=5, num_workers=0, progress=False)
    return root, clip, red_areas


def _colour_builder(root, clip, language_guidance_on=False, context=('blue',)):
    torch.manual_seed(0)
    dense_clip = open_clip.CLIP(**TINY_RN).eval()  # MaskCLIP is unused without guidance
    text = TextEncoder(clip, ColourCLIP.tokenizer, ('a {}.',))
    return ReferenceBuilder(dense_clip, TextEncoder(dense_clip, clip_tokenizer(context_length=16)),
                            ColourFeatures(), ImageIndex(str(root / 'index'), clip), text,
                            k=6, image_size=32, language_guidance=language_guidance_on,
                            context_elimination=bool(context), context_classes=context)


def test_colour_world_retrieval_ranks_by_embedding(colour_world):
    root, clip, red_areas = colour_world
    builder = _colour_builder(root, clip)
    got = [osp.basename(p) for p in builder.retrieve('red')]
    index = ImageIndex(str(root / 'index'))
    rows = index.store[0:len(index.store)]
    oracle = rows @ np.array([1, 0, 0], np.float32)
    order = sorted(range(len(rows)), key=lambda i: (-oracle[i], i))[:6]
    assert got == [index.files[i] for i in order]
    assert all(red_areas[name] > 0 for name in got)  # only images that hold red


def test_colour_world_context_elimination_moves_the_seeds_to_the_concept(colour_world):
    root, clip, _ = colour_world
    unit = lambda v: F.normalize(torch.tensor(v, dtype=torch.float32), dim=0)
    red_dir, blue_dir = unit([0.9, 0.08, 0.08]), unit([0.0, 0.0, 1.0])
    plain = _colour_builder(root, clip, context=()).reference('red')
    # without context elimination the identical blue half of every image wins
    assert float(plain @ blue_dir) > 0.99
    builder = _colour_builder(root, clip, context=('blue',))
    context = builder.context_references()
    assert float(context['blue'] @ blue_dir) > 0.99
    ref = builder.reference('red')
    assert float(ref @ red_dir) > 0.99, ref
    assert torch.equal(builder.reference('blue'), context['blue'])  # context reused


def test_language_guidance_picks_the_named_region():
    """Dense 'MaskCLIP' features equal to the colours and a text embedding of red: the
    guidance weights make red the seed of every image despite the common blue."""
    rng = np.random.default_rng(1)
    images = torch.stack([torch.from_numpy(_colour_image(rng, 2)).permute(2, 0, 1).float() / 255
                          for _ in range(4)])
    feats = F.avg_pool2d(images, 8)
    _, plain_seeds = cosegment(feats)
    assert (plain_seeds[:, 1] >= 2).all()  # columns 2-3: the blue half
    guidance = language_guidance(feats, torch.tensor([1.0, 0.0, 0.0]))
    ref, seeds = cosegment(feats, guidance)
    assert (seeds[:, 1] == 0).all() and (seeds[:, 0] < 2).all()  # the red patch
    assert float(ref[0]) > 0.95


# ----------------------------------------------------------------------------- index
def _folder(root, n=11, bad=2):
    rng = np.random.default_rng(0)
    os.makedirs(root / 'sub', exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(
            root / ('sub' if i % 2 else '.') / f'{i:03d}.png')
    for i in range(bad):
        (root / f'broken_{i}.jpg').write_bytes(b'not an image')
    return root


@pytest.fixture(scope='module')
def tiny_clip(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('clip') / 'tiny_clip.pt'
    torch.save(open_clip.CLIP(**TINY_RN).state_dict(), path)
    return str(path), build_clip(model_cfg=TINY_RN, checkpoint=str(path)).eval()


def test_index_resumes_to_the_same_arrays(tmp_path, tiny_clip):
    _, clip = tiny_clip
    images = _folder(tmp_path / 'images')
    full = build_image_index(str(images), str(tmp_path / 'full'), clip, 'tiny', image_size=64,
                             batch_size=3, num_workers=0, chunk_rows=4, progress=False)
    with pytest.warns(UserWarning, match='skipped 2 unreadable'):
        build_image_index(str(images), str(tmp_path / 'full2'), clip, 'tiny', image_size=64,
                          batch_size=3, num_workers=0, chunk_rows=4, progress=False)
    assert full == dict(images=13, embedded=11, skipped=2, complete=True)
    part = build_image_index(str(images), str(tmp_path / 'part'), clip, 'tiny', image_size=64,
                             batch_size=3, num_workers=0, chunk_rows=4, progress=False,
                             max_batches=2)
    assert not part['complete']
    with pytest.raises(ValueError, match='unfinished'):
        ImageIndex(str(tmp_path / 'part'))
    (tmp_path / 'part' / '.tmp_leftover').write_bytes(b'x')  # a write killed half-way
    # a run that dies in its 2nd batch (nothing flushed since the last chunk) ...
    calls = {'n': 0}
    encode = clip.encode_image

    def dying(x):
        calls['n'] += 1
        if calls['n'] == 3:  # the first call probes the output size
            raise KeyboardInterrupt
        return encode(x)
    clip.encode_image = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            build_image_index(str(images), str(tmp_path / 'part'), clip, 'tiny', image_size=64,
                              batch_size=3, num_workers=0, chunk_rows=4, progress=False)
    finally:
        del clip.encode_image
    # ... and the run that finishes it
    build_image_index(str(images), str(tmp_path / 'part'), clip, 'tiny', image_size=64,
                      batch_size=3, num_workers=0, chunk_rows=4, progress=False)
    a, b = ImageIndex(str(tmp_path / 'full')), ImageIndex(str(tmp_path / 'part'))
    assert a.files == b.files and len(a.files) == 13 and len(a) == len(b) == 11
    rows_a, rows_b = a.store[0:13], b.store[0:13]
    np.testing.assert_array_equal(rows_a, rows_b)
    # unreadable files hold zero rows (never retrieved); the others are unit CLIP embeddings
    broken = [i for i, n in enumerate(a.files) if 'broken' in n]
    assert len(broken) == 2 and not rows_a[broken].any() and a.store.dtype == np.float16
    good = [i for i in range(13) if i not in broken]
    np.testing.assert_allclose(np.linalg.norm(rows_a[good], axis=1), 1, atol=2e-3)
    x = load_rgb_224(str(images / a.files[good[0]]), 64)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    with torch.no_grad():
        want = F.normalize(clip.encode_image(((x - mean) / std)[None]), dim=-1)[0]
    np.testing.assert_allclose(rows_a[good[0]], want.numpy(), atol=2e-3)
    paths, _ = a.topk(torch.randn(32), k=20)
    assert len(paths) == 11 and not any('broken' in p for p in paths)
    # another CLIP, or the same folder with other settings, is refused
    torch.manual_seed(5)
    other = open_clip.CLIP(**TINY_RN).eval()
    with pytest.raises(ValueError, match='other settings.*clip'):
        build_image_index(str(images), str(tmp_path / 'full'), other, 'other', image_size=64,
                          num_workers=0, progress=False)
    with pytest.raises(ValueError, match='was built with CLIP'):
        ImageIndex(str(tmp_path / 'full'), other, 'other')


# ----------------------------------------------------------------------------- extractors
def test_timm_vit_features_load_a_deit_checkpoint(tmp_path):
    import timm

    from densebox.reco import TimmViTFeatures
    torch.manual_seed(0)
    kwargs = dict(depth=1)
    source = timm.create_model('deit_tiny_distilled_patch16_224', pretrained=False, **kwargs)
    path = tmp_path / 'deit.pth'
    torch.save({'model': source.state_dict()}, path)  # the DeiT release layout, heads included
    ext = TimmViTFeatures('deit_tiny_distilled_patch16_224', str(path), model_kwargs=kwargs)
    x = torch.rand(2, 3, 64, 96)
    feats = ext(x)
    assert feats.shape == (2, 192, 4, 6)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    source.set_input_size(img_size=(64, 96))
    tokens = source.eval().forward_features((x - mean) / std)[:, 2:]  # cls + dist dropped
    torch.testing.assert_close(feats, tokens.transpose(1, 2).reshape(2, 192, 4, 6))
    assert ext.describe()['weights'] != TimmViTFeatures(
        'deit_tiny_distilled_patch16_224', model_kwargs=kwargs).describe()['weights']
    # DINO's release: a bare state dict of a ViT without a head
    dino = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, **kwargs)
    torch.save(dino.state_dict(), tmp_path / 'dino.pth')
    ext = TimmViTFeatures('vit_tiny_patch16_224', str(tmp_path / 'dino.pth'), model_kwargs=kwargs)
    dino.set_input_size(img_size=(64, 96))
    tokens = dino.eval().forward_features((x - mean) / std)[:, 1:]
    torch.testing.assert_close(ext(x), tokens.transpose(1, 2).reshape(2, 192, 4, 6))
    with pytest.raises(FileNotFoundError, match='missing.pth not found'):
        TimmViTFeatures('deit_tiny_distilled_patch16_224', str(tmp_path / 'missing.pth'))
    with pytest.raises(RuntimeError, match='does not fit'):
        TimmViTFeatures('vit_tiny_patch16_224', str(path), model_kwargs=kwargs)


def test_maskclip_is_value_and_output_projection_of_c5(tiny_clip):
    from densebox.models.backbones.maskclip import MaskCLIP, clip_stage_features
    _, clip = tiny_clip
    x = torch.rand(2, 3, 64, 64)
    dense = MaskCLIP(clip)(x)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    c5, = clip_stage_features(clip.visual, (x - mean) / std, (4,))
    pool = clip.visual.attnpool
    pixel = c5[0, :, 1, 0]
    want = pool.c_proj(pool.v_proj(pixel))
    torch.testing.assert_close(dense[0, :, 1, 0], want, rtol=1e-4, atol=1e-5)
    assert dense.shape == (2, 32, 2, 2)
    vit = open_clip.CLIP(**dict(TINY_RN, vision_cfg=dict(image_size=32, layers=1, width=32,
                                                         patch_size=8, head_width=16)))
    with pytest.raises(TypeError, match='ResNet image tower'):
        MaskCLIP(vit)


# ----------------------------------------------------------------------------- segmenter
def _reco_cfg(tmp_path, clip_path, classes, extractor_stage=3, retrieval=True, index=None):
    cfg = dict(
        type='ReCoSegmentor',
        data_preprocessor=dict(type='SegDataPreprocessor', mean=[0, 0, 0],
                               std=[255, 255, 255], pad_size_divisor=32),
        clip=dict(model_cfg=TINY_RN, checkpoint=clip_path),
        extractor=dict(type='CLIPImageFeatures', stage=extractor_stage),
        classes=list(classes), references=str(tmp_path / 'refs.pt'),
        context_classes=('background',))
    if retrieval:
        cfg['retrieval'] = dict(index=index or str(tmp_path / 'index'), k=3, image_size=64)
    return cfg


@pytest.fixture()
def seg_world(tmp_path, tiny_clip):
    from densebox.reco.quickstart import write_eval_split, write_image_folder
    clip_path, clip = tiny_clip
    data = dict(img_size=64, max_objects=2, size_range=(0.3, 0.5), empty_fraction=0.2, seed=0)
    write_image_folder(data, str(tmp_path / 'index_images'), 8)
    write_eval_split(data, str(tmp_path / 'data'), 3)
    build_image_index(str(tmp_path / 'index_images'), str(tmp_path / 'index'), clip, 'tiny',
                      image_size=64, num_workers=0, progress=False)
    return tmp_path, clip_path


def test_segmenter_inference_with_any_class_list(seg_world):
    import densebox
    from mmengine.config import Config
    tmp_path, clip_path = seg_world
    classes = ('background', 'circle', 'square')
    test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
    cfg = Config(dict(model=_reco_cfg(tmp_path, clip_path, classes),
                      test_pipeline=test_pipeline, default_scope='densebox'))
    model = densebox.init_model(cfg, device='cpu')
    model.prepare()  # the references are computed on the model's device before use
    refs = ReferenceSet.load(str(tmp_path / 'refs.pt'))
    assert refs.classes[:1] == ['background'] and set(classes) <= set(refs.classes)
    image = np.asarray(Image.open(tmp_path / 'data' / 'images' / 'val' / 'val_000000.jpg'))
    res = densebox.inference(image, model, classes=['star', 'cross', 'background', 'moon'])
    assert res.class_names == ('star', 'cross', 'background', 'moon')
    assert res.sem_seg.shape == image.shape[:2] and res.sem_seg.max() < 4
    assert model.classes == list(classes)  # restored after the call
    assert {'star', 'cross', 'moon'} <= set(ReferenceSet.load(str(tmp_path / 'refs.pt')).classes)
    # the predicted label is the arg-max of ReCo's scores, which follow their definition
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    scores = model.scores(x)
    assert scores.shape == (1, 3, 64, 64) and bool((scores >= 0).all() & (scores <= 1).all())
    with pytest.raises(ValueError, match='class list is empty'):
        densebox.inference(image, model, classes=[])
    with pytest.raises(RuntimeError, match='training-free'):
        model(x, [], mode='loss')


def test_tools_test_runs_reco_without_a_checkpoint(seg_world):
    from mmengine.config import Config

    from densebox.cli import test_main
    tmp_path, clip_path = seg_world
    cfg = Config(dict(
        _base_=[osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                         'configs', '_base_', 'default_runtime.py')],
        model=_reco_cfg(tmp_path, clip_path, ('background', 'circle', 'square', 'triangle',
                                               'star', 'cross')),
        work_dir=str(tmp_path / 'work'),
        test_dataloader=dict(batch_size=2, num_workers=0,
                             sampler=dict(type='DefaultSampler', shuffle=False),
                             dataset=dict(type='ShapesSegDataset', data_root=str(tmp_path / 'data'),
                                          data_prefix=dict(img_path='images/val',
                                                           seg_map_path='masks/val'),
                                          test_mode=True,
                                          pipeline=[dict(type='LoadImageFromFile'),
                                                    dict(type='LoadAnnotations', with_bbox=False,
                                                         with_label=False, with_seg=True),
                                                    dict(type='PackSegInputs')])),
        test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
        test_cfg=dict(type='TestLoop')))
    path = str(tmp_path / 'reco_test.py')
    cfg.dump(path)
    metrics = test_main([path])
    assert 0 <= metrics['mIoU'] <= 100
    with pytest.raises(ValueError, match='give the checkpoint'):
        test_main(['configs/quickstart_seg_shapes.py'])


def test_reference_files_record_and_check_their_settings(seg_world, tiny_clip):
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    tmp_path, clip_path = seg_world
    model = MODELS.build(_reco_cfg(tmp_path, clip_path, ['circle', 'star']))
    model.prepare()
    refs = ReferenceSet.load(str(tmp_path / 'refs.pt'), model.expected_settings())
    assert refs.classes == ['background', 'circle', 'star'] or set(refs.classes) >= {'circle', 'star'}
    again = ReferenceSet.load(str(tmp_path / 'refs.pt'))
    assert torch.equal(again.references, refs.references) and again.meta == refs.meta
    assert refs.meta['retrieval']['k'] == 3 and refs.meta['extractor']['stage'] == 3
    # a model that reads the file without an index uses it as it is
    offline = MODELS.build(_reco_cfg(tmp_path, clip_path, ['star'], retrieval=False))
    offline.prepare()
    torch.testing.assert_close(offline.ref_embeddings[0], refs.select(['star']).references[0])
    with pytest.raises(KeyError, match=r"no references for \['moon'\]"):
        MODELS.build(_reco_cfg(tmp_path, clip_path, ['moon'], retrieval=False))
    # another extractor, another MaskCLIP CLIP: errors naming what differs
    with pytest.raises(ValueError, match='extractor.stage: stored 3, in use 2'):
        MODELS.build(_reco_cfg(tmp_path, clip_path, ['star'], extractor_stage=2,
                               retrieval=False))
    torch.manual_seed(7)
    other = tmp_path / 'other_clip.pt'
    torch.save(open_clip.CLIP(**TINY_RN).state_dict(), other)
    with pytest.raises(ValueError, match='dense_clip.weights'):
        MODELS.build(_reco_cfg(tmp_path, str(other), ['star'], retrieval=False))
    with pytest.raises(ValueError, match='class list is empty'):
        MODELS.build(_reco_cfg(tmp_path, clip_path, []))
    with pytest.raises(ValueError, match='not a densebox ReCo reference file'):
        torch.save({'x': torch.zeros(1)}, tmp_path / 'bad.pt')
        ReferenceSet.load(str(tmp_path / 'bad.pt'))


def test_a_concept_without_retrieved_images_is_an_error(tmp_path, tiny_clip):
    clip_path, clip = tiny_clip
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'a.jpg').write_bytes(b'no image')
    with pytest.warns(UserWarning, match='skipped 1'):
        build_image_index(str(tmp_path / 'broken'), str(tmp_path / 'index'), clip, 'tiny',
                          image_size=64, num_workers=0, progress=False)
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    model = MODELS.build(_reco_cfg(tmp_path, clip_path, ['unicorn']))
    with pytest.raises(ValueError, match="concept 'background': no images retrieved"):
        model.prepare()
    model = MODELS.build(dict(_reco_cfg(tmp_path, clip_path, ['unicorn']), context_classes=()))
    with pytest.raises(ValueError, match="concept 'unicorn': no images retrieved"):
        model.prepare()


def test_reco_cli_index_and_refs(tmp_path, tiny_clip, monkeypatch):
    from densebox.reco.cli import main
    from densebox.reco.quickstart import write_image_folder
    clip_path, _ = tiny_clip
    write_image_folder(dict(img_size=64, max_objects=2, size_range=(0.3, 0.5),
                            empty_fraction=0.0, seed=0), str(tmp_path / 'images'), 5)
    # an open_clip model name with a checkpoint file: RN50 is too big for a test, so the
    # tiny model goes through a config file
    from mmengine.config import Config
    cfg = Config(dict(model=_reco_cfg(tmp_path, clip_path, ['circle'], retrieval=False)))
    cfg.dump(str(tmp_path / 'reco.py'))
    from densebox.reco import cli
    monkeypatch.setattr(cli, '_build_retrieval_clip',
                        lambda name, checkpoint: build_clip(model_cfg=TINY_RN,
                                                            checkpoint=checkpoint))
    result = main(['index', '--images', str(tmp_path / 'images'), '--out',
                   str(tmp_path / 'index'), '--clip', 'tiny', '--checkpoint', clip_path,
                   '--image-size', '64', '--workers', '0', '--device', 'cpu'])
    assert result['embedded'] == 5 and result['complete']
    main(['refs', '--config', str(tmp_path / 'reco.py'), '--index', str(tmp_path / 'index'),
          '--classes', 'circle,star', '--out', str(tmp_path / 'cli_refs.pt'), '--k', '2',
          '--device', 'cpu'])
    refs = ReferenceSet.load(str(tmp_path / 'cli_refs.pt'))
    assert {'circle', 'star'} <= set(refs.classes) and refs.meta['retrieval']['k'] == 2
    with pytest.raises(SystemExit):
        main(['refs', '--config', str(tmp_path / 'reco.py'), '--index', str(tmp_path / 'index'),
              '--classes', ',', '--out', str(tmp_path / 'x.pt')])


def test_pseudo_labels_cli_writes_the_predictions(seg_world):
    from mmengine.config import Config

    from densebox.reco.cli import main
    tmp_path, clip_path = seg_world
    # the eval split doubles as "train" here: images/val -> images/<split>
    os.rename(tmp_path / 'data' / 'images' / 'val', tmp_path / 'data' / 'images' / 'train')
    cfg = Config(dict(
        model=_reco_cfg(tmp_path, clip_path, ('background', 'circle')),
        test_dataloader=dict(dataset=dict(
            type='ShapesSegDataset', data_root=str(tmp_path / 'data'),
            data_prefix=dict(img_path='images/val', seg_map_path='masks/val'), test_mode=True,
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=False, with_label=False,
                           with_seg=True),
                      dict(type='PackSegInputs')]))))
    cfg.dump(str(tmp_path / 'reco.py'))
    assert main(['pseudo-labels', '--config', str(tmp_path / 'reco.py'), '--split', 'train',
                 '--out', str(tmp_path / 'pseudo'), '--device', 'cpu']) == 3
    label = np.asarray(Image.open(tmp_path / 'pseudo' / 'val_000000.png'))
    assert label.shape == (64, 64) and label.max() <= 1


def test_output_mapping_takes_the_best_fine_class(seg_world):
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    tmp_path, clip_path = seg_world
    fine = ['circle', 'square', 'star', 'background']
    model = MODELS.build(dict(_reco_cfg(tmp_path, clip_path, fine),
                              output_classes=('shape', 'background'),
                              output_mapping=(0, 0, 0, 1)))
    x = torch.rand(1, 3, 64, 64)
    scores = model.scores(x)
    out = model.predict(x)[0]
    want = torch.tensor([0, 0, 0, 1])[scores[0].argmax(0)]
    assert torch.equal(out.pred_sem_seg.data[0], want)
    torch.testing.assert_close(out.seg_logits.data[0], scores[0, :3].max(0).values)
    with pytest.raises(ValueError, match='output_mapping values'):
        MODELS.build(dict(_reco_cfg(tmp_path, clip_path, fine),
                          output_classes=('shape',), output_mapping=(0, 0, 0, 1)))


# ----------------------------------------------------------------------------- data, configs
def _write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_cityscapes27_and_coco_stuff27_label_maps(tmp_path):
    from densebox.datasets import Cityscapes27Dataset, CocoStuff27Dataset
    from densebox.datasets.coco_stuff import COCO_STUFF_182_TO_27
    from densebox.datasets.transforms import LoadAnnotations
    ids = np.array([[0, 6, 7, 8], [26, 33, 34, 255]])
    root = tmp_path / 'cs'
    _write_png(root / 'leftImg8bit/val/a/a_1_leftImg8bit.png', np.zeros((2, 4, 3)))
    _write_png(root / 'gtFine/val/a/a_1_gtFine_labelIds.png', ids)
    ds = Cityscapes27Dataset(data_root=str(root), data_prefix=dict(
        img_path='leftImg8bit/val', seg_map_path='gtFine/val'), test_mode=True)
    seg = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True)(ds[0])['gt_seg_map']
    assert seg.tolist() == [[255, 255, 0, 1], [19, 26, 255, 255]]
    assert len(ds.metainfo['classes']) == 27 and ds.metainfo['classes'][19] == 'car'
    root = tmp_path / 'coco'
    raw = np.array([[0, 11, 95, 168], [181, 255, 60, 12]])
    _write_png(root / 'images/val2017/1.jpg', np.zeros((2, 4, 3)))
    _write_png(root / 'annotations/val2017/1.png', raw)
    ds = CocoStuff27Dataset(data_root=str(root), data_prefix=dict(
        img_path='images/val2017', seg_map_path='annotations/val2017'), test_mode=True)
    seg = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True)(ds[0])['gt_seg_map']
    want = [[COCO_STUFF_182_TO_27[v] if v < 182 else 255 for v in row] for row in raw.tolist()]
    assert seg.tolist() == want
    assert want[0][0] == 9 and ds.metainfo['classes'][9] == 'person'  # person is a thing


def test_coco_stuff_tables_and_configs_agree():
    from mmengine.config import Config

    from densebox.datasets.coco_stuff import (COCO_STUFF_171_TO_27, COCO_STUFF_27_CLASSES,
                                              COCO_STUFF_CLASSES, COCO_STUFF_IDS)
    assert len(set(COCO_STUFF_CLASSES)) == 171 and len(set(COCO_STUFF_IDS)) == 171
    assert set(range(182)) - set(COCO_STUFF_IDS) == {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}
    by_name = dict(zip(COCO_STUFF_CLASSES, COCO_STUFF_171_TO_27))
    assert COCO_STUFF_27_CLASSES[by_name['tv']] == 'electronic'
    assert COCO_STUFF_27_CLASSES[by_name['book']] == 'indoor'
    assert COCO_STUFF_27_CLASSES[by_name['banner']] == 'textile'
    assert COCO_STUFF_27_CLASSES[by_name['sky other']] == 'sky'
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, 'configs', 'reco_coco_stuff27.py'))
    assert tuple(cfg.model.classes) == COCO_STUFF_CLASSES
    assert tuple(cfg.model.output_classes) == COCO_STUFF_27_CLASSES
    assert tuple(cfg.model.output_mapping) == COCO_STUFF_171_TO_27
    cs = Config.fromfile(osp.join(root, 'configs', 'reco_cityscapes.py'))
    assert len(cs.model.classes) == 27 and cs.model.retrieval.k == 50
    assert cs.model.context_classes == ('tree', 'sky', 'building', 'road', 'person')
    assert cs.model.extractor.model_name == 'deit_small_distilled_patch16_224'
    assert cs.model.clip.model_name == 'RN50x16'


def test_center_crop_makes_the_crop_the_image():
    from densebox.datasets.transforms import CenterCrop
    img = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
    seg = np.arange(60, dtype=np.uint8).reshape(6, 10)
    out = CenterCrop(4)(dict(img=img, gt_seg_map=seg, img_shape=(6, 10), ori_shape=(6, 10)))
    assert out['img'].shape == (4, 4, 3) and out['ori_shape'] == (4, 4)
    np.testing.assert_array_equal(out['gt_seg_map'], seg[1:5, 3:7])
    np.testing.assert_array_equal(out['img'], img[1:5, 3:7])


def test_deeplabv3plus_head_and_torchvision_resnet():
    import torchvision

    from densebox.registry import MODELS

    from densebox.setup_env import register_all_modules
    from densebox.models.seg_heads.deeplabv3plus_head import SeparableConvBNAct
    register_all_modules()
    backbone = MODELS.build(dict(type='TorchvisionResNet', depth=50, out_indices=(0, 3),
                                 replace_stride_with_dilation=(False, True, True),
                                 bn_momentum=0.01))
    tv = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True,
                                                                                True])
    missing = set(tv.state_dict()) - set(backbone.state_dict())
    assert missing == {'fc.weight', 'fc.bias'}  # torchvision's weights load as they are
    assert all(m.momentum == 0.01 for m in backbone.modules()
               if isinstance(m, torch.nn.BatchNorm2d))
    backbone.load_state_dict({k: v for k, v in tv.state_dict().items() if k in
                              backbone.state_dict()})
    x = torch.randn(1, 3, 64, 64)
    low, high = backbone.eval()(x)
    assert low.shape == (1, 256, 16, 16) and high.shape == (1, 2048, 8, 8)  # output stride 8
    trunk = torch.nn.Sequential(*list(tv.eval().children())[:-2])
    torch.testing.assert_close(high, trunk(x))
    head = MODELS.build(dict(type='DeepLabV3PlusHead', in_channels=2048, c1_in_channels=256,
                             channels=32, c1_channels=8, dilations=(12, 24, 36),
                             num_classes=5, in_index=(0, 1))).eval()
    out = head((low, high))
    assert out.shape == (1, 5, 16, 16)
    assert sum(isinstance(m, SeparableConvBNAct) for m in head.modules()) == 4
    dw = head.atrous[0].depthwise
    assert dw.groups == 2048 and dw.dilation == (12, 12) and dw.kernel_size == (3, 3)
    plain = MODELS.build(dict(type='DeepLabV3PlusHead', in_channels=2048, c1_in_channels=256,
                              channels=32, num_classes=5, separable=False))
    assert not any(isinstance(m, SeparableConvBNAct) for m in plain.modules())
    cfg_path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs',
                        'reco_plus_cityscapes.py')
    from mmengine.config import Config
    cfg = Config.fromfile(cfg_path)
    assert cfg.model.backbone.depth == 101 and cfg.train_cfg.max_iters == 20000
    assert cfg.optim_wrapper.optimizer.type == 'Adam' and cfg.optim_wrapper.optimizer.lr == 5e-4


def test_dense_crf_cleans_noisy_scores_along_image_edges():
    pytest.importorskip('pydensecrf.densecrf', reason='the optional CRF: pip install '
                        '"densebox[crf]"')  # the error path is tested below either way
    from densebox.reco.crf import dense_crf
    image = np.zeros((24, 24, 3), np.uint8)
    image[:, 12:] = 255
    truth = torch.zeros(24, 24, dtype=torch.long)
    truth[:, 12:] = 1
    rng = torch.Generator().manual_seed(0)
    probs = torch.full((2, 24, 24), 0.3)
    probs[0][truth == 0] = 0.7
    probs[1][truth == 1] = 0.7
    flip = torch.rand(24, 24, generator=rng) < 0.25  # a quarter of the pixels wrong
    probs[:, flip] = probs[:, flip].flip(0)
    noisy = probs.argmax(0)
    out = dense_crf(image, probs.log())
    assert out.shape == (2, 24, 24)
    assert (out.argmax(0) != truth).sum() < (noisy != truth).sum() / 4


def test_crf_without_pydensecrf_names_the_package(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_crf(name, *args, **kwargs):
        if name.startswith('pydensecrf'):
            raise ImportError('no pydensecrf')
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_crf)
    from densebox.reco.crf import require_pydensecrf
    with pytest.raises(ImportError, match=r'pip install pydensecrf2'):
        require_pydensecrf()


def test_segmenter_with_crf(seg_world):
    pytest.importorskip('pydensecrf.densecrf', reason='the optional CRF')
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    tmp_path, clip_path = seg_world
    model = MODELS.build(dict(_reco_cfg(tmp_path, clip_path, ['background', 'circle']),
                              crf=True))
    x = torch.rand(2, 3, 64, 64)
    out = model.predict(x)
    assert out[0].pred_sem_seg.data.shape == (1, 64, 64)
    probs = out[0].seg_logits.data
    torch.testing.assert_close(probs.sum(0), torch.ones(64, 64), atol=1e-3, rtol=0)

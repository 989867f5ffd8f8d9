"""DenseCLIP on tiny open_clip models (no pretrained weights): the dense attention pool
against a plain computation, the backbones against open_clip's own towers, the text
encoder's contexts, gamma's start, training with the text tower frozen, the text-feature
cache, saving / restoring contexts, the released-checkpoint converter against a plain
re-statement of the official model, the paper's model sizes, inference, ONNX, and the
missing-weights error."""
import copy
import os.path as osp
import sys

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper

import denseclip_reference as official
from densebox.converters.denseclip import (convert_denseclip_checkpoint,
                                           convert_denseclip_state_dict, denseclip_config_for)
from densebox.models.backbones.clip_dense import (CLIPResNet, CLIPVisionTransformer,
                                                  _block_forward, attention_pool_dense)
from densebox.models.backbones.clip_text import tokenize_class_names
from densebox.models.segmentors.denseclip import DenseCLIP
from densebox.registry import MODELS
from densebox.setup_env import register_all_modules
from densebox.structures import SegDataSample
from mmengine.structures import PixelData

register_all_modules()
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSES = ('wall', 'chest of drawers', 'sky')

# Tiny open_clip models: RN (stem 4, C2..C5 32..256, 4-head attention pool, 32-d embedding),
# ViT (width 32, 4 blocks, 2 heads, patch 16); both with a 1-layer, 32-wide text tower.
TEXT_CFG = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)
TINY_RN = dict(embed_dim=32, text_cfg=TEXT_CFG,
               vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=8, patch_size=None))
TINY_VIT = dict(embed_dim=32, text_cfg=TEXT_CFG,
                vision_cfg=dict(image_size=64, layers=4, width=32, patch_size=16, head_width=16))


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_denseclip_cfg(kind='rn', pretrained=None, num_classes=len(CLASSES), classes=CLASSES):
    """A DenseCLIP model config with the recipe's structure at tiny widths."""
    rn = kind == 'rn'
    arch = TINY_RN if rn else TINY_VIT
    c = num_classes
    backbone = (dict(type='CLIPResNet', arch=arch, input_resolution=64, pretrained=pretrained)
                if rn else
                dict(type='CLIPVisionTransformer', arch=arch, input_resolution=64,
                     out_indices=(0, 1, 2, 3), drop_path_rate=0.1, quick_gelu=True,
                     pretrained=pretrained))
    return dict(
        type='DenseCLIP', class_names=list(classes), class_name_length=5,
        score_concat_index=3 if rn else 2,
        data_preprocessor=dict(type='SegDataPreprocessor', mean=[122.8, 116.7, 104.1],
                               std=[68.5, 66.6, 70.3]),
        backbone=backbone,
        text_encoder=dict(type='CLIPTextContextEncoder', arch=arch, context_length=13,
                          quick_gelu=True, pretrained=pretrained),
        context_decoder=dict(type='ContextDecoder', visual_dim=32, transformer_width=16,
                             transformer_heads=2, transformer_layers=2),
        neck=dict(type='FPN', in_channels=[32, 64, 128, 256 + c] if rn else [32, 32, 32 + c, 32],
                  out_channels=16, num_outs=4),
        decode_head=dict(type='FPNHead', in_channels=[16] * 4, feature_strides=[4, 8, 16, 32],
                         channels=16, num_classes=c, norm_cfg=dict(type='BN')),
        test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(43, 43)))


def build(cfg, seed=0):
    torch.manual_seed(seed)
    return MODELS.build(copy.deepcopy(cfg))


def samples_with_labels(labels):
    out = []
    for lab in labels:
        s = SegDataSample(metainfo=dict(img_shape=tuple(lab.shape), ori_shape=tuple(lab.shape)))
        s.gt_sem_seg = PixelData(data=lab[None].long())
        out.append(s)
    return out


# -------------------------------------------------------------------- backbones, text tower
def test_dense_attention_pool_against_a_plain_computation():
    backbone = build(dict(type='CLIPResNet', arch=TINY_RN, input_resolution=64)).eval()
    pool = backbone.visual.attnpool
    torch.manual_seed(1)
    x = torch.randn(2, 256, 3, 5)            # a C5 map of another size than the 2x2 grid
    global_feat, dense = attention_pool_dense(pool, x)
    # plain: tokens [mean; positions], bilinearly resized positional embedding, per-head
    # softmax(q k^T / sqrt(d)) v, output projection
    tokens = torch.cat([x.flatten(2).mean(2, keepdim=True), x.flatten(2)], 2).transpose(1, 2)
    pos = pool.positional_embedding
    grid = pos[1:].reshape(1, 2, 2, 256).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(3, 5), mode='bilinear', align_corners=False)
    tokens = tokens + torch.cat([pos[:1], grid.flatten(2)[0].t()])
    q, k, v = (F.linear(tokens, getattr(pool, n).weight, getattr(pool, n).bias)
               for n in ('q_proj', 'k_proj', 'v_proj'))
    heads = q.reshape(2, 16, 4, 64).transpose(1, 2), k.reshape(2, 16, 4, 64).transpose(1, 2)
    attn = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / 8.0, dim=-1)
    out = (attn @ v.reshape(2, 16, 4, 64).transpose(1, 2)).transpose(1, 2).reshape(2, 16, 256)
    out = F.linear(out, pool.c_proj.weight, pool.c_proj.bias)             # (B, 16, 32)
    torch.testing.assert_close(global_feat, out[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dense, out[:, 1:].transpose(1, 2).reshape(2, 32, 3, 5),
                               rtol=1e-5, atol=1e-6)
    # at the pool's own grid, the global output is open_clip's attention pool
    x = torch.randn(2, 256, 2, 2)
    torch.testing.assert_close(attention_pool_dense(pool, x)[0], pool(x), rtol=1e-5, atol=1e-6)


def test_resnet_backbone_levels_and_embeddings_are_open_clips():
    backbone = build(dict(type='CLIPResNet', arch=TINY_RN, input_resolution=64)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        *levels, (global_feat, dense) = backbone(x)
        want = backbone.visual.forward_intermediates(x, intermediates_only=True)
    assert [tuple(f.shape) for f in levels] == [(2, 32, 16, 24), (2, 64, 8, 12),
                                                (2, 128, 4, 6), (2, 256, 2, 3)]
    for got, ref in zip(levels, want['image_intermediates'][1:]):  # [stem, C2, ..., C5]
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert tuple(dense.shape) == (2, 32, 2, 3) and tuple(global_feat.shape) == (2, 32)
    with torch.no_grad():  # at the pool's grid the global embedding is CLIP's image embedding
        square = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(backbone(square)[-1][0], backbone.visual(square),
                                   rtol=1e-5, atol=1e-6)
    plain = build(dict(type='CLIPResNet', arch=TINY_RN, get_embeddings=False))
    assert plain.visual.attnpool is None and len(plain(x)) == 4


def test_vit_backbone_multiscale_and_embeddings():
    backbone = build(dict(type='CLIPVisionTransformer', arch=TINY_VIT, input_resolution=64,
                          out_indices=(0, 1, 2, 3), quick_gelu=True)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        *levels, (global_feat, dense) = backbone(x)
    assert [tuple(f.shape) for f in levels] == [(2, 32, 16, 24), (2, 32, 8, 12),
                                                (2, 32, 4, 6), (2, 32, 2, 3)]
    assert tuple(dense.shape) == (2, 32, 4, 6) and tuple(global_feat.shape) == (2, 32)
    # With the class embedding at zero (so the original's double class embedding makes no
    # difference), the global embedding at the native grid is open_clip's image embedding.
    with torch.no_grad():
        backbone.visual.class_embedding.zero_()
        square = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(backbone(square)[-1][0], backbone.visual(square),
                                   rtol=1e-5, atol=1e-5)
    # drop path off: the block forward is open_clip's block
    block = backbone.visual.transformer.resblocks[1]
    tokens = torch.randn(2, 17, 32)
    torch.testing.assert_close(_block_forward(block, tokens, torch.nn.Identity()),
                               block(tokens), rtol=0, atol=0)
    # drop path rises linearly to drop_path_rate over the blocks
    rates = [getattr(m, 'drop_prob', 0.0) for m in
             build(dict(type='CLIPVisionTransformer', arch=TINY_VIT, input_resolution=64,
                        out_indices=(0, 1, 2, 3), drop_path_rate=0.3)).drop_paths]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_class_names_are_tokenised_as_clip_and_checked():
    tokens = tokenize_class_names(['wall', 'chest of drawers'], 5)
    full = open_clip.tokenize(['wall', 'chest of drawers'])
    torch.testing.assert_close(tokens, full[:, :5])
    assert tokens[1].tolist() == full[1, :5].tolist() and int(tokens[1].argmax()) == 4
    with pytest.raises(ValueError, match="'a photo of a large dog' needs 8 CLIP tokens"):
        tokenize_class_names(['sky', 'a photo of a large dog'], 5)
    with pytest.raises(ValueError, match='names for a decode head of 3'):
        build(dict(tiny_denseclip_cfg(), class_names=['a', 'b']))
    cfg = tiny_denseclip_cfg()
    cfg['neck']['in_channels'] = [32, 64, 128, 256]
    with pytest.raises(ValueError, match=r'gives \[32, 64, 128, 256\] with the 3-class score '
                                         r'map added to level 3: \[32, 64, 128, 259\]'):
        build(cfg)
    cfg = tiny_denseclip_cfg()
    cfg['backbone']['get_embeddings'] = False
    with pytest.raises(ValueError, match='get_embeddings=True'):
        build(cfg)


def test_ade20k_class_names_come_from_the_dataset():
    from densebox.datasets.ade20k import ADE20K_CLASSES
    cfg = tiny_denseclip_cfg(num_classes=150, classes=ADE20K_CLASSES)
    model = build(dict(cfg, class_names='ADE20KDataset'))
    assert model.class_names == ADE20K_CLASSES and tuple(model.class_tokens.shape) == (150, 5)
    with pytest.raises(KeyError, match='NoSuchDataset'):
        build(dict(cfg, class_names='NoSuchDataset'))


# ------------------------------------------------------------------------ DenseCLIP model
def test_contexts_gamma_and_score_map():
    model = build(tiny_denseclip_cfg()).eval()
    assert tuple(model.contexts.shape) == (1, 8, 32)             # 13 - 5 learnable tokens
    assert torch.all(model.gamma == 1e-4) and tuple(model.gamma.shape) == (32,)
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feats, score = model.forward_features(x)
        *levels, (global_feat, dense) = model.backbone(x)
        text = model.text_encoder(model.class_tokens, model.contexts)          # (1, K, D)
    # score map: cosine of the dense embeddings and the decoder-updated text features
    ctx = torch.cat([global_feat[:, :, None], dense.flatten(2)], 2).transpose(1, 2)
    updated = text + model.gamma * model.context_decoder(text.expand(2, -1, -1), ctx)
    cos = F.cosine_similarity(dense[:, None], updated[:, :, :, None, None], dim=2)
    torch.testing.assert_close(score, cos, rtol=1e-5, atol=1e-6)
    assert tuple(score.shape) == (2, 3, 2, 3) and len(feats) == 4
    assert tuple(feats[0].shape) == (2, 16, 16, 24)
    # gamma = 1e-4 keeps the decoder's share tiny at the start
    assert (updated - text).abs().max() < 1e-3 * text.abs().max()


def test_text_features_are_cached_in_inference_only():
    model = build(tiny_denseclip_cfg())
    calls = []
    model.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        first = model.forward_features(x)[1]            # the score map
        second = model.forward_features(x)[1]
    assert len(calls) == 1 and torch.equal(first, second)
    with torch.no_grad():
        model.contexts.copy_(torch.randn_like(model.contexts))   # the cache is stale now
        third = model.forward_features(x)[1]
    assert len(calls) == 2 and (first - third).abs().max() > 1e-3
    with torch.no_grad():
        model.load_state_dict(build(tiny_denseclip_cfg(), seed=5).state_dict())
        model(x, mode='tensor')
    assert len(calls) == 3
    model.train()
    model(x, mode='tensor')
    model(x, mode='tensor')
    assert len(calls) == 5          # recomputed every training forward


def _train_model(model, steps, lr=2e-3):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'denseclip_r50_fpn_ade20k.py'))
    optim_cfg = cfg.optim_wrapper.to_dict()
    optim_cfg['optimizer']['lr'] = lr
    wrapper = build_optim_wrapper(model, optim_cfg)
    torch.manual_seed(3)
    images = torch.randn(2, 3, 64, 64)
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, :, 32:] = 1
    labels[:, 40:] = 2
    labels[0, :4] = 255
    model.train()
    losses = []
    for _ in range(steps):
        parsed, log_vars = model.parse_losses(model(images, samples_with_labels(labels),
                                                    mode='loss'))
        wrapper.update_params(parsed)
        losses.append(log_vars)
    return wrapper, losses


def test_a_few_training_steps_lower_the_loss_and_leave_the_text_tower():
    model = revert_sync_batchnorm(build(tiny_denseclip_cfg()))
    text_before = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    contexts_before = model.contexts.detach().clone()
    backbone_before = model.backbone.visual.conv1.weight.detach().clone()
    wrapper, logs = _train_model(model, steps=12)
    assert set(logs[0]) >= {'decode.loss_ce', 'pixel_text.loss_ce', 'pixel_text.acc_seg', 'loss'}
    assert logs[-1]['loss'] < 0.7 * logs[0]['loss']
    assert logs[-1]['pixel_text.loss_ce'] < logs[0]['pixel_text.loss_ce']
    for key, value in model.text_encoder.state_dict().items():
        assert torch.equal(value, text_before[key]), key
    assert not torch.equal(model.contexts, contexts_before)
    assert not torch.equal(model.backbone.visual.conv1.weight, backbone_before)
    # the recipe's groups: backbone 0.1 x lr, no text encoder, no decay on the decoder's norms
    groups = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert not any(id(p) in groups for p in model.text_encoder.parameters())
    assert groups[id(named['backbone.visual.conv1.weight'])]['lr'] == pytest.approx(2e-4)
    assert groups[id(named['backbone.visual.bn1.weight'])]['weight_decay'] == 1e-4
    assert groups[id(named['contexts'])]['lr'] == pytest.approx(2e-3)
    assert groups[id(named['context_decoder.decoder.0.norm2.weight'])]['weight_decay'] == 0.0
    assert groups[id(named['decode_head.conv_seg.weight'])]['weight_decay'] == 1e-4


def test_pixel_text_loss_is_the_score_map_cross_entropy():
    model = build(tiny_denseclip_cfg())
    score = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 16, 16))
    labels[0, 0] = 255
    out = model.loss_pixel_text(score, samples_with_labels(labels))
    logits = F.interpolate(score / 0.07, size=(16, 16), mode='bilinear', align_corners=False)
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction='none')
    torch.testing.assert_close(out['pixel_text.loss_ce'], 0.4 * per_pixel.sum() / labels.numel())


def test_contexts_are_saved_and_restored(tmp_path):
    from densebox.engine.checkpoint import load_weights
    from densebox.engine.checkpoint import atomic_save_checkpoint
    model = revert_sync_batchnorm(build(tiny_denseclip_cfg()))
    _train_model(model, steps=2)
    path = str(tmp_path / 'denseclip.pth')
    atomic_save_checkpoint({'state_dict': model.state_dict(), 'meta': {}}, path)
    restored = revert_sync_batchnorm(build(tiny_denseclip_cfg(), seed=9)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = restored(x, mode='tensor')          # fills the text cache
    load_weights(restored, path)
    assert torch.equal(restored.contexts, model.contexts)
    assert torch.equal(restored.gamma, model.gamma)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(x, mode='tensor'), model(x, mode='tensor'),
                                   rtol=0, atol=0)
        assert not torch.allclose(before, restored(x, mode='tensor'))


# ------------------------------------------------------------------------- CLIP weights
def _save_tiny_clip(arch, path, image_size=32):
    """A CLIP state dict as open_clip writes it, at another image size than the model's."""
    torch.manual_seed(11)
    cfg = copy.deepcopy(arch)
    cfg['vision_cfg']['image_size'] = image_size
    clip = open_clip.CLIP(**cfg, quick_gelu=True)
    torch.save(clip.state_dict(), path)
    return clip.state_dict()


@pytest.mark.parametrize('kind', ['rn', 'vit'])
def test_clip_weights_load_into_both_towers(tmp_path, kind):
    from densebox.models.backbones.clip_dense import resize_pos_embed
    path = str(tmp_path / 'clip.pt')
    arch = TINY_RN if kind == 'rn' else TINY_VIT
    clip = _save_tiny_clip(arch, path)
    model = build(tiny_denseclip_cfg(kind, pretrained=path))
    model.init_weights()
    visual = model.backbone.visual.state_dict()
    pos_key = 'attnpool.positional_embedding' if kind == 'rn' else 'positional_embedding'
    side = 2 if kind == 'rn' else 4                        # 64 / 32 or 64 / 16
    torch.testing.assert_close(visual[pos_key],
                               resize_pos_embed(clip[f'visual.{pos_key}'], (side, side)))
    for key, value in visual.items():
        if key != pos_key:
            assert torch.equal(value, clip[f'visual.{key}']), key
    text = model.text_encoder.state_dict()
    assert torch.equal(text['positional_embedding'], clip['positional_embedding'][:13])
    for key in ('token_embedding.weight', 'text_projection', 'ln_final.weight',
                'transformer.resblocks.0.attn.in_proj_weight'):
        assert torch.equal(text[key], clip[key]), key
    assert torch.all(model.gamma == 1e-4)  # loading CLIP leaves DenseCLIP's own parameters


def test_missing_clip_weights_stop_with_the_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    missing = str(tmp_path / 'RN50_missing.pt')
    model = build(tiny_denseclip_cfg(pretrained=missing))
    with pytest.raises(FileNotFoundError, match=r'backbone: CLIP weights .*RN50_missing\.pt '
                                                r'not found.*backbone\.pretrained=None'):
        model.init_weights()
    model = build(tiny_denseclip_cfg(pretrained='clip_rn50_openai'))
    expected = osp.join(str(tmp_path / 'home'), 'checkpoints', 'downloads', 'RN50.pt')
    with pytest.raises(FileNotFoundError, match=r'not in the cache \(' + expected):
        model.init_weights()
    # the recipe names the zoo entry, so training stops at the same place
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'denseclip_r50_fpn_ade20k.py'))
    assert cfg.model.backbone.pretrained == 'clip_rn50_openai'
    assert cfg.model.text_encoder.pretrained == 'clip_rn50_openai'


# ---------------------------------------------------------------------------- converter
RN_DIMS = dict(backbone=('rn', 8, [1, 1, 1, 1], 32, 64), text=(32, 1, 49408, 13, 32),
               decoder=(32, 16, 2), num_classes=3, fpn_in=[32, 64, 128, 256 + 3], fpn_out=16,
               head_channels=16)
VIT_DIMS = dict(backbone=('vit', 32, 4, 16, 32, 64), text=(32, 1, 49408, 13, 32),
                decoder=(32, 16, 2), num_classes=3, fpn_in=[32, 32, 32 + 3, 32], fpn_out=16,
                head_channels=16)


@pytest.mark.parametrize('kind', ['rn', 'vit'])
def test_converted_official_weights_compute_what_the_official_model_computes(kind):
    dims = RN_DIMS if kind == 'rn' else VIT_DIMS
    sd = official.random_state(official.official_state_shapes(**dims), seed=2)
    model = build(tiny_denseclip_cfg(kind)).double().eval()   # float64: rounding apart
    converted = convert_denseclip_state_dict(sd)
    assert set(converted) == set(model.state_dict())      # strict: nothing missing or left
    model.load_state_dict(converted)
    torch.manual_seed(4)
    img = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    tokens = tokenize_class_names(CLASSES, 5)
    if kind == 'rn':
        ref = official.official_forward(sd, img, tokens, ('rn', [1, 1, 1, 1], 4), 2, 1, 2, 2, 3)
    else:
        ref = official.official_forward(sd, img, tokens, ('vit', 4, 2, (0, 1, 2, 3)), 2, 1, 2,
                                        2, 2)
    with torch.no_grad():
        *levels, (global_feat, dense) = model.backbone(img)
        text = model.text_features()
        feats, score = model.forward_features(img)
        logits = model(img, mode='tensor')
    close = dict(rtol=1e-9, atol=1e-10)
    for got, want in zip(levels, ref['levels']):
        if got.shape != want.shape:   # the official list has the score map concatenated
            want = want[:, :got.shape[1]]
        torch.testing.assert_close(got, want, **close)
    torch.testing.assert_close(global_feat, ref['global_feat'], **close)
    torch.testing.assert_close(dense, ref['dense'], **close)
    torch.testing.assert_close(text, ref['text'], **close)
    torch.testing.assert_close(score, ref['score_map'], **close)
    for got, want in zip(feats, ref['neck']):
        torch.testing.assert_close(got, want, **close)
    torch.testing.assert_close(logits, ref['logits'], **close)


@pytest.mark.parametrize('config,dims', [
    ('denseclip_r50_fpn_ade20k.py', dict(backbone=('rn', 64, [3, 4, 6, 3], 1024, 512),
                                         text=(512, 12, 49408, 13, 1024), decoder=(1024, 256, 3),
                                         num_classes=150, fpn_in=[256, 512, 1024, 2048 + 150])),
    ('denseclip_r101_fpn_ade20k.py', dict(backbone=('rn', 64, [3, 4, 23, 3], 512, 512),
                                          text=(512, 12, 49408, 13, 512), decoder=(512, 256, 3),
                                          num_classes=150, fpn_in=[256, 512, 1024, 2048 + 150])),
    ('denseclip_vitb16_fpn_ade20k.py', dict(backbone=('vit', 768, 12, 16, 512, 640),
                                            text=(512, 12, 49408, 13, 512),
                                            decoder=(512, 256, 3), num_classes=150,
                                            fpn_in=[768, 768, 768 + 150, 768])),
])
def test_released_checkpoint_layouts_convert_to_the_recipes(config, dims):
    """The official key layout at full size (shapes only, on the meta device) maps onto
    exactly the recipe's model, and the config is told from the keys."""
    shapes = official.official_state_shapes(**dims)
    state = {k: torch.empty(s, device='meta') for k, s in shapes.items()}
    converted = convert_denseclip_state_dict(state)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    assert denseclip_config_for(converted) == f'configs/{config}'


def test_converter_checkpoint_meta_and_bad_keys():
    sd = official.random_state(official.official_state_shapes(**RN_DIMS))
    sd = {f'module.{k}': v for k, v in sd.items()}
    out = convert_denseclip_checkpoint({'state_dict': sd, 'meta': {
        'CLASSES': ('wall', 'bed ', 'sky'), 'PALETTE': [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}})
    assert out['meta']['dataset_meta']['classes'] == ('wall', 'bed', 'sky')
    assert 'backbone.visual.attnpool.c_proj.weight' in out['state_dict']
    with pytest.raises(KeyError, match="'head.fc.weight' is not a key of an official DenseCLIP"):
        convert_denseclip_state_dict({'head.fc.weight': torch.zeros(1)})


def _write_tiny_config(tmp_path, kind='rn', test_cfg=None):
    cfg = tiny_denseclip_cfg(kind)
    if test_cfg:
        cfg['test_cfg'] = test_cfg
    path = tmp_path / f'tiny_denseclip_{kind}.py'
    path.write_text(f"model = {cfg!r}\n"
                    "test_pipeline = [dict(type='LoadImageFromFile'),\n"
                    "                 dict(type='Resize', scale=(96, 64), keep_ratio=True),\n"
                    "                 dict(type='PackSegInputs')]\n"
                    "test_dataloader = dict(dataset=dict(type='BaseSegDataset', "
                    f"metainfo=dict(classes={list(CLASSES)!r}), pipeline=test_pipeline))\n")
    return str(path)


def test_convert_tool_inference_and_onnx(tmp_path):
    """tools/convert/denseclip_official.py on an official-layout file, then
    densebox.inference (SegResult) and the ONNX export with the text features baked in."""
    import onnx
    import onnxruntime as ort
    import densebox
    from densebox.deploy import export_onnx
    sys.path.insert(0, osp.join(ROOT, 'tools', 'convert'))
    import denseclip_official as tool
    sd = official.random_state(official.official_state_shapes(**RN_DIMS), dtype=torch.float32)
    src, dst = tmp_path / 'denseclip_fpn_res50.pth', tmp_path / 'converted.pth'
    torch.save({'state_dict': sd, 'meta': {'CLASSES': CLASSES}}, src)
    config = _write_tiny_config(tmp_path, test_cfg=dict(mode='whole'))
    tool.main([str(src), str(dst), '--config', config])
    with pytest.raises(SystemExit, match='do not fit'):
        tool.main([str(src), str(tmp_path / 'x.pth')])   # told from the keys: RN50 recipe
    model = densebox.init_model(config, str(dst), device='cpu')
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    result = densebox.inference(image, model)
    assert type(result).__name__ == 'SegResult' and result.sem_seg.shape == (50, 70)
    assert model.dataset_meta['classes'] == CLASSES

    onnx_path = export_onnx(model, str(tmp_path / 'denseclip.onnx'), input_shape=(64, 96))
    graph = onnx.load(onnx_path).graph
    shapes = [tuple(t.dims) for t in graph.initializer]
    assert (49408, 32) not in shapes            # no token embedding: the text tower is gone
    session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    batch = torch.randint(0, 256, (1, 3, 64, 96)).float()
    (seg_map,) = session.run(None, {'images': batch.numpy()})
    with torch.no_grad():
        x = (batch - model.data_preprocessor.mean) / model.data_preprocessor.std
        want = model.inference(x).argmax(1)
    assert (seg_map == want.numpy()).mean() > 0.999


def test_slide_inference_predicts_at_the_original_size():
    model = build(tiny_denseclip_cfg()).eval()
    sample = SegDataSample(metainfo=dict(img_shape=(100, 150), ori_shape=(50, 75)))
    with torch.no_grad():
        (out,) = model.predict(torch.randn(1, 3, 100, 150), [sample])
    assert tuple(out.seg_logits.data.shape) == (3, 50, 75)
    assert tuple(out.pred_sem_seg.data.shape) == (1, 50, 75)


# --------------------------------------------------------------------------- model size
@pytest.mark.parametrize('config,params,gmacs', [
    ('clip_r50_fpn_ade20k.py', 31.0e6, 248.8e9),
    ('denseclip_r50_fpn_ade20k.py', 50.3e6, 269.2e9),
    ('denseclip_r101_fpn_ade20k.py', 67.8e6, 346.3e9),
])
def test_model_size_beside_the_paper(config, params, gmacs, capsys):
    """tools/analyze_model.py: parameters without the frozen text tower within 0.2% of the
    paper's, multiply-adds at 1024 x 1024 without the text tower within 1%."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import analyze_model
    out = analyze_model.main([osp.join(ROOT, 'configs', config)])
    printed = capsys.readouterr().out
    assert 'as the paper counts' in printed and 'paper' in out
    assert abs(out['paper']['params'] / params - 1) < 2e-3
    assert abs(out['paper']['madds'] / gmacs - 1) < 1e-2
    if 'denseclip' in config:
        assert out['modules']['text_encoder']['params'] > 60e6     # counted apart
        assert out['paper']['exclude'] == ['text_encoder']


# ---------------------------------------------------------------------- train.py / test.py
def test_recipe_trains_from_clip_weights_and_tests(tmp_path, monkeypatch):
    """tools/train.py (2 iterations, CLIP weights from a file, the recipe's optimiser and
    schedule) and tools/test.py (slide inference, mIoU) on a tiny ADE20K tree, with the
    DenseCLIP RN50 recipe at tiny widths (the tiny CLIP registered as an open_clip name)."""
    from PIL import Image
    from densebox.cli import test_main, train_main
    root = tmp_path / 'ADEChallengeData2016'
    rng = np.random.default_rng(0)
    for split in ('training', 'validation'):
        for i in range(2):
            (root / 'images' / split).mkdir(parents=True, exist_ok=True)
            (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(
                root / 'images' / split / f'ADE_{split}_{i:08d}.jpg')
            Image.fromarray(rng.integers(0, 151, (64, 80), dtype=np.uint8)).save(
                root / 'annotations' / split / f'ADE_{split}_{i:08d}.png')
    weights = str(tmp_path / 'tiny_clip.pt')
    _save_tiny_clip(TINY_RN, weights, image_size=224)
    tiny = tiny_denseclip_cfg(num_classes=150)
    config = tmp_path / 'tiny_denseclip_r50.py'
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, 'densebox-tiny-rn', TINY_RN)
    arch = 'densebox-tiny-rn'
    config.write_text(f'''_base_ = [{osp.join(ROOT, 'configs', 'denseclip_r50_fpn_ade20k.py')!r}]
model = dict(
    backbone=dict(arch={arch!r}, input_resolution=64, pretrained={weights!r}),
    text_encoder=dict(arch={arch!r}, pretrained={weights!r}),
    context_decoder=dict(visual_dim=32, transformer_width=16, transformer_heads=2),
    neck=dict(in_channels={tiny['neck']['in_channels']!r}, out_channels=16),
    decode_head=dict(in_channels=[16, 16, 16, 16], channels=16),
    test_cfg=dict(crop_size=(64, 64), stride=(43, 43)))
crop = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='RandomResize', scale=(160, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='SegPad', size=crop, pad_val=0, seg_pad_val=255),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 72), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={str(root)!r}, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={str(root)!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1),
    dict(type='PolyLR', eta_min=1e-6, power=0.9, by_epoch=False, begin=0, end=2)]
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
''')
    work = str(tmp_path / 'work')
    train_main([str(config), '--work-dir', work])
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    from densebox.engine.checkpoint import safe_torch_load
    state = safe_torch_load(ckpt)['state_dict']
    clip = torch.load(weights)
    # started from the CLIP file: the frozen text tower still holds its weights exactly
    assert torch.equal(state['text_encoder.token_embedding.weight'],
                       clip['token_embedding.weight'])
    assert torch.equal(state['text_encoder.positional_embedding'],
                       clip['positional_embedding'][:13])
    assert 'contexts' in state and tuple(state['contexts'].shape) == (1, 8, 32)
    metrics = test_main([str(config), ckpt, '--work-dir', work])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 'aAcc' in metrics


def test_analyze_on_meta_counts_attention_the_cpu_count_misses():
    from densebox.models.utils import analyze
    baseline = dict(type='EncoderDecoder', backbone=dict(type='CLIPResNet', arch=TINY_RN,
                                                         get_embeddings=False),
                    neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=16,
                              num_outs=4),
                    decode_head=dict(type='FPNHead', in_channels=[16] * 4, channels=16,
                                     feature_strides=[4, 8, 16, 32], num_classes=3))
    assert analyze(baseline, (64, 96)) == analyze(baseline, (64, 96), on_meta=True)
    cfg = tiny_denseclip_cfg()
    cpu = analyze(cfg, (64, 96), by_module=True)
    meta = analyze(cfg, (64, 96), by_module=True, on_meta=True)
    assert meta['params'] == cpu['params']
    # On the CPU, torch runs attention as one fused kernel FlopCounterMode does not count;
    # on the meta device it runs as matmuls: q k^T and attn v of the attention pool over
    # N = 2 x 3 + 1 tokens of width 256, 2 FLOPs per multiply-add.
    n = 2 * 3 + 1
    assert (meta['modules']['backbone']['flops'] - cpu['modules']['backbone']['flops']
            == 2 * 2 * n * n * 256)
    # the children add up to the total but for the segmentor's own score-map einsum:
    # 2 FLOPs x (K=3) x (D=32) x (2 x 3 positions)
    children = sum(m['flops'] for m in meta['modules'].values())
    assert meta['flops'] - children == 2 * 3 * 32 * 2 * 3
    assert meta['modules']['text_encoder']['params'] == sum(
        p.numel() for p in build(cfg).text_encoder.parameters())

"""mmdetection SSD300 / SSD512 / SSDLite checkpoints -> densebox.

The mmdetection state dicts here are made from a description of mmdetection's modules
written out in this file (mmcv VGG + SSDVGG's fc6/fc7, SSDNeck of ConvModules, SSDHead,
mmdet MobileNetV2 / InvertedResidual, DepthwiseSeparableConvModule): key names and shapes
as mmdetection builds them, filled with random numbers. The converted dicts must load into
densebox models with strict=True, the inverse mapping (written separately below) must
round-trip, and class probabilities / box deltas must match per anchor against an
mmdetection-style computation with anchors from mmdetection's generator rule.
"""
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from densebox.converters.mmdet_ssd import (anchor_permutation, convert_mmdet_ssd,
                                           convert_mmdet_ssd_checkpoint, mmdet_ssd_anchor_sizes)
from densebox.registry import MODELS
from densebox.setup_env import register_all_modules
from densebox.zoo.manifest import MANIFEST

register_all_modules()

VGG16 = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512)
MNV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))


# ------------------------------------------------------------ mmdetection key/shape specs
def _bn(prefix, c):
    return {f'{prefix}.weight': (c,), f'{prefix}.bias': (c,), f'{prefix}.running_mean': (c,),
            f'{prefix}.running_var': (c,), f'{prefix}.num_batches_tracked': ()}


def _num_priors(ratios):
    """mmdet SSDAnchorGenerator: ratios [1, 1/r, r, ...] at min size + one sqrt box."""
    return 1 + 2 * len(ratios) + 1


def mmdet_vgg_ssd_spec(num_classes, neck_out, strides_kernel, ratios):
    """Keys and shapes of mmdet's SSD300 / SSD512 (SSDVGG + SSDNeck + SSDHead)."""
    spec, idx, c_in = OrderedDict(), 0, 3
    for item in VGG16:               # mmcv VGG: conv3x3 + ReLU per item, max-pool for 'M'
        if item == 'M':
            idx += 1
            continue
        spec[f'backbone.features.{idx}.weight'] = (item, c_in, 3, 3)
        spec[f'backbone.features.{idx}.bias'] = (item,)
        c_in, idx = item, idx + 2
    assert idx == 30                 # no last pool; SSDVGG appends pool5 at 30
    spec['backbone.features.31.weight'] = (1024, 512, 3, 3)   # fc6, dilation 6
    spec['backbone.features.31.bias'] = (1024,)
    spec['backbone.features.33.weight'] = (1024, 1024, 1, 1)  # fc7
    spec['backbone.features.33.bias'] = (1024,)
    spec['neck.l2_norm.weight'] = (512,)
    prev = neck_out[1]
    for i, (out, kernel) in enumerate(zip(neck_out[2:], strides_kernel)):
        spec[f'neck.extra_layers.{i}.0.conv.weight'] = (out // 2, prev, 1, 1)
        spec[f'neck.extra_layers.{i}.0.conv.bias'] = (out // 2,)
        spec[f'neck.extra_layers.{i}.1.conv.weight'] = (out, out // 2, kernel, kernel)
        spec[f'neck.extra_layers.{i}.1.conv.bias'] = (out,)
        prev = out
    for i, (c, r) in enumerate(zip(neck_out, ratios)):
        a = _num_priors(r)
        spec[f'bbox_head.cls_convs.{i}.0.weight'] = (a * (num_classes + 1), c, 3, 3)
        spec[f'bbox_head.cls_convs.{i}.0.bias'] = (a * (num_classes + 1),)
        spec[f'bbox_head.reg_convs.{i}.0.weight'] = (a * 4, c, 3, 3)
        spec[f'bbox_head.reg_convs.{i}.0.bias'] = (a * 4,)
    return spec


def mmdet_ssdlite_spec(num_classes, neck_out, ratios):
    """Keys and shapes of mmdet's SSDLite (MobileNetV2 out_indices (4, 7), depthwise neck
    and head, BN everywhere)."""
    spec = OrderedDict()
    spec['backbone.conv1.conv.weight'] = (32, 3, 3, 3)
    spec.update(_bn('backbone.conv1.bn', 32))
    c_in = 32
    for s, (t, c, n, _) in enumerate(MNV2_STAGES):
        for b in range(n):
            p = f'backbone.layer{s + 1}.{b}'
            mid = int(round(c_in * t))
            if t != 1:
                spec[f'{p}.expand_conv.conv.weight'] = (mid, c_in, 1, 1)
                spec.update(_bn(f'{p}.expand_conv.bn', mid))
            spec[f'{p}.depthwise_conv.conv.weight'] = (mid, 1, 3, 3)
            spec.update(_bn(f'{p}.depthwise_conv.bn', mid))
            spec[f'{p}.linear_conv.conv.weight'] = (c, mid, 1, 1)
            spec.update(_bn(f'{p}.linear_conv.bn', c))
            c_in = c
    spec['backbone.conv2.conv.weight'] = (1280, 320, 1, 1)
    spec.update(_bn('backbone.conv2.bn', 1280))
    prev = neck_out[1]
    for i, out in enumerate(neck_out[2:]):
        p = f'neck.extra_layers.{i}'
        spec[f'{p}.0.conv.weight'] = (out // 2, prev, 1, 1)
        spec.update(_bn(f'{p}.0.bn', out // 2))
        spec[f'{p}.1.depthwise_conv.conv.weight'] = (out // 2, 1, 3, 3)
        spec.update(_bn(f'{p}.1.depthwise_conv.bn', out // 2))
        spec[f'{p}.1.pointwise_conv.conv.weight'] = (out, out // 2, 1, 1)
        spec.update(_bn(f'{p}.1.pointwise_conv.bn', out))
        prev = out
    for i, (c, r) in enumerate(zip(neck_out, ratios)):
        a = _num_priors(r)
        for branch, k in (('cls', num_classes + 1), ('reg', 4)):
            p = f'bbox_head.{branch}_convs.{i}'
            spec[f'{p}.0.conv.weight'] = (c, 1, 3, 3)
            spec.update(_bn(f'{p}.0.bn', c))
            spec[f'{p}.1.weight'] = (a * k, c, 1, 1)
            spec[f'{p}.1.bias'] = (a * k,)
    return spec


def random_state(spec, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for key, shape in spec.items():
        if key.endswith('num_batches_tracked'):
            out[key] = torch.tensor(int(torch.randint(0, 1000, (1,), generator=g)))
        elif key.endswith('running_var'):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g)
    return out


# ------------------------------------------------- mmdetection anchors and inverse mapping
def mmdet_base_sizes(min_size, max_size, ratios, scale_major=False):
    """(A, 2) (w, h) of one cell, by mmdetection's SSDAnchorGenerator.gen_base_anchors."""
    scales = torch.tensor([1.0, math.sqrt(max_size / min_size)])
    anchor_ratios = [1.0]
    for r in ratios:
        anchor_ratios += [1 / r, r]
    anchor_ratios = torch.tensor(anchor_ratios)
    h_ratios = anchor_ratios.sqrt()
    w_ratios = 1 / h_ratios
    if scale_major:
        ws = (min_size * w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (min_size * h_ratios[:, None] * scales[None, :]).reshape(-1)
    else:
        ws = (min_size * scales[:, None] * w_ratios[None, :]).reshape(-1)
        hs = (min_size * scales[:, None] * h_ratios[None, :]).reshape(-1)
    indices = list(range(len(anchor_ratios)))
    indices.insert(1, len(indices))
    return torch.stack([ws, hs], 1)[indices]


def densebox_to_mmdet(state, ratios, num_classes, neck_depthwise=False):
    """The inverse conversion, written key family by key family."""
    out = OrderedDict()
    for key, value in state.items():
        parts = key.split('.')
        if key.startswith('backbone.features.') or key == 'neck.l2_norm.weight':
            new = key
        elif key.startswith('backbone.stem.'):
            new = 'backbone.conv1.' + '.'.join(parts[2:])
        elif key.startswith('backbone.conv_last.'):
            new = 'backbone.conv2.' + '.'.join(parts[2:])
        elif key.startswith('backbone.stages.'):
            unit = {'expand': 'expand_conv', 'depthwise': 'depthwise_conv',
                    'project': 'linear_conv'}[parts[4]]
            new = '.'.join(['backbone', f'layer{int(parts[2]) + 1}', parts[3], unit] + parts[5:])
        elif key.startswith('neck.extra_layers.'):
            level, which, index, rest = parts[2], parts[3], int(parts[4]), parts[5:]
            if which == '1' and neck_depthwise:
                names = {0: 'depthwise_conv.conv', 1: 'depthwise_conv.bn',
                         3: 'pointwise_conv.conv', 4: 'pointwise_conv.bn'}
            else:
                names = {0: 'conv', 1: 'bn'}
            new = '.'.join(['neck.extra_layers', level, which, names[index]] + rest)
        elif key.startswith('bbox_head.'):
            branch, level = parts[1], int(parts[2])
            if len(parts) == 4:                           # SSD: a bare conv
                new, predicting = f'bbox_head.{branch}.{level}.0.{parts[3]}', True
            else:                                         # SSDLite: dw, bn, relu6, 1x1
                index = int(parts[3])
                new = {0: f'bbox_head.{branch}.{level}.0.conv.{parts[4]}',
                       1: f'bbox_head.{branch}.{level}.0.bn.{parts[4]}',
                       3: f'bbox_head.{branch}.{level}.1.{parts[4]}'}[index]
                predicting = index == 3
            if predicting:
                perm = anchor_permutation(ratios[level])
                k = num_classes + 1 if branch == 'cls_convs' else 4
                t = value.reshape(len(perm), k, *value.shape[1:])
                if branch == 'cls_convs':                 # background 0 -> last
                    t = torch.cat([t[:, 1:], t[:, :1]], 1)
                inverse = torch.empty(len(perm), dtype=torch.long)
                inverse[torch.tensor(perm)] = torch.arange(len(perm))
                value = t[inverse].reshape(value.shape)
        else:
            raise KeyError(key)
        out[new] = value
    return out


# ------------------------------------------------------------------------------- configs
def _ssd_cfg(path, num_classes, **sizes):
    cfg = Config.fromfile(path).model
    cfg.bbox_head.num_classes = num_classes
    cfg.bbox_head.anchor_generator.update(sizes)
    return cfg


def _ssdlite_cfg(num_classes=80):
    cfg = Config.fromfile('configs/ssdlite_mobilenetv2_coco.py')
    opts = MANIFEST['ssdlite_mobilenetv2_coco_mmdet']['cfg_options']
    cfg.merge_from_dict(opts)
    cfg.model.bbox_head.num_classes = num_classes
    return cfg.model


SSD_CASES = {
    'ssd300_voc': ('configs/ssd300_voc.py', 20, 300, (0.2, 0.9), (3, 3, 3, 3)),
    'ssd512_coco': ('configs/ssd512_coco.py', 80, 512, (0.1, 0.9), (3, 3, 3, 3, 4)),
}


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.fixture(scope='module')
def ssd300_voc():
    path, c, size, basesize, kernels = SSD_CASES['ssd300_voc']
    model_cfg = _ssd_cfg(path, c)
    spec = mmdet_vgg_ssd_spec(c, model_cfg.neck.out_channels, kernels,
                              model_cfg.bbox_head.anchor_generator.ratios)
    mmdet_state = random_state(spec)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg).eval()
    return model_cfg, spec, mmdet_state, model


# ------------------------------------------------------------------------------------ tests
def test_mmdet_anchor_sizes_match_densebox_configs_and_zoo():
    # SSD300: mmdetection's rule gives the sizes densebox's configs hold (from the paper)
    for path, rng in (('configs/ssd300_voc.py', (0.2, 0.9)), ('configs/ssd300_coco.py', (0.15, 0.9))):
        gen = Config.fromfile(path).model.bbox_head.anchor_generator
        mins, maxs = mmdet_ssd_anchor_sizes(300, rng, 6)
        assert list(gen.min_sizes) == mins and list(gen.max_sizes) == maxs
    # SSD512: mmdetection truncates to int; the zoo entries carry its numbers
    for name, rng in (('ssd512_coco_mmdet', (0.1, 0.9)), ('ssd512_voc_mmdet', (0.15, 0.9))):
        mins, maxs = mmdet_ssd_anchor_sizes(512, rng, 7)
        opts = MANIFEST[name]['cfg_options']
        assert opts['model.bbox_head.anchor_generator.min_sizes'] == mins
        assert opts['model.bbox_head.anchor_generator.max_sizes'] == maxs
        ours = Config.fromfile(MANIFEST[name]['config']).model.bbox_head.anchor_generator
        assert all(abs(a - b) < 1 for a, b in zip(ours.min_sizes, mins))  # Caffe vs int


@pytest.mark.parametrize('ratios', [[2], [2, 3]])
def test_anchor_permutation_against_mmdet_generator(ratios):
    from densebox.models.det_heads import SSDAnchorGenerator
    gen = SSDAnchorGenerator(300, [8], [30], [60], [ratios])
    ours = gen.base_sizes[0].float()                                # (A, 2) w, h
    theirs = mmdet_base_sizes(30.0, 60.0, ratios)
    perm = anchor_permutation(ratios)
    torch.testing.assert_close(ours, theirs[perm])
    assert perm == list(range(len(perm)))  # scale_major=False: the same order
    with pytest.raises(ValueError, match='scale_major=True'):
        anchor_permutation(ratios, scale_major=True)


def test_ssd300_voc_keys_shapes_and_strict_load(ssd300_voc):
    model_cfg, spec, mmdet_state, model = ssd300_voc
    converted = convert_mmdet_ssd(mmdet_state, model_cfg.bbox_head.anchor_generator.ratios, 20)
    assert _shapes(converted) == _shapes(model.state_dict())
    model.load_state_dict(converted, strict=True)
    # the inverse of the conversion lands exactly on mmdetection's names and shapes ...
    back = densebox_to_mmdet(converted, model_cfg.bbox_head.anchor_generator.ratios, 20)
    assert _shapes(back) == {k: tuple(v) for k, v in spec.items()}
    for key in mmdet_state:  # ... and on the same numbers
        torch.testing.assert_close(back[key], mmdet_state[key], rtol=0, atol=0)


def test_ssd300_voc_predictions_match_mmdet_layout(ssd300_voc):
    model_cfg, _, mmdet_state, model = ssd300_voc
    gen_cfg = model_cfg.bbox_head.anchor_generator
    model.load_state_dict(convert_mmdet_ssd(mmdet_state, gen_cfg.ratios, 20), strict=True)
    g = torch.Generator().manual_seed(3)
    for level in (0, 1, 5):
        c_in = model_cfg.bbox_head.in_channels[level]
        x = torch.randn(1, c_in, 3, 3, generator=g)
        w_cls = mmdet_state[f'bbox_head.cls_convs.{level}.0.weight']
        b_cls = mmdet_state[f'bbox_head.cls_convs.{level}.0.bias']
        w_reg = mmdet_state[f'bbox_head.reg_convs.{level}.0.weight']
        b_reg = mmdet_state[f'bbox_head.reg_convs.{level}.0.bias']
        # mmdetection: softmax over C + 1 with background last, anchors in its order
        m_cls = F.conv2d(x, w_cls, b_cls, padding=1).permute(0, 2, 3, 1).reshape(9, -1, 21)
        m_prob = m_cls.softmax(-1)[..., :20]
        m_reg = F.conv2d(x, w_reg, b_reg, padding=1).permute(0, 2, 3, 1).reshape(9, -1, 4)
        with torch.no_grad():
            d_cls = model.bbox_head.cls_convs[level](x).permute(0, 2, 3, 1).reshape(9, -1, 21)
            d_reg = model.bbox_head.reg_convs[level](x).permute(0, 2, 3, 1).reshape(9, -1, 4)
        d_prob = d_cls.softmax(-1)[..., 1:]
        theirs = mmdet_base_sizes(gen_cfg.min_sizes[level], gen_cfg.max_sizes[level],
                                  gen_cfg.ratios[level])
        ours = model.bbox_head.anchor_generator.base_sizes[level].float()
        for j in range(len(ours)):  # match every densebox anchor to mmdet's by its size
            i = int(((theirs - ours[j]).abs().sum(1)).argmin())
            torch.testing.assert_close(theirs[i], ours[j])
            torch.testing.assert_close(d_prob[:, j], m_prob[:, i])
            torch.testing.assert_close(d_reg[:, j], m_reg[:, i])


def test_ssd512_coco_round_trip_and_strict_load():
    path, c, size, basesize, kernels = SSD_CASES['ssd512_coco']
    mins, maxs = mmdet_ssd_anchor_sizes(size, basesize, 7)
    model_cfg = _ssd_cfg(path, c, min_sizes=mins, max_sizes=maxs)
    ratios = model_cfg.bbox_head.anchor_generator.ratios
    spec = mmdet_vgg_ssd_spec(c, model_cfg.neck.out_channels, kernels, ratios)
    mmdet_state = random_state(spec, seed=1)
    model = MODELS.build(model_cfg)
    converted = convert_mmdet_ssd(mmdet_state, ratios, c)
    model.load_state_dict(converted, strict=True)
    back = densebox_to_mmdet(model.state_dict(), ratios, c)
    assert set(back) == set(mmdet_state)
    for key in mmdet_state:
        torch.testing.assert_close(back[key], mmdet_state[key], rtol=0, atol=0)


def test_ssdlite_keys_round_trip_and_bn_eps():
    model_cfg = _ssdlite_cfg(80)
    ratios = model_cfg.bbox_head.anchor_generator.ratios
    spec = mmdet_ssdlite_spec(80, model_cfg.neck.out_channels, ratios)
    mmdet_state = random_state(spec, seed=2)
    model = MODELS.build(model_cfg).eval()
    plain = convert_mmdet_ssd(mmdet_state, ratios, 80)
    assert _shapes(plain) == _shapes(model.state_dict())
    model.load_state_dict(plain, strict=True)
    back = densebox_to_mmdet(model.state_dict(), ratios, 80, neck_depthwise=True)
    assert _shapes(back) == {k: tuple(v) for k, v in spec.items()}
    for key in mmdet_state:
        torch.testing.assert_close(back[key], mmdet_state[key], rtol=0, atol=0)

    # eps 1e-3 BN (mmdet SSDLite) == densebox eps 1e-5 BN with the folded running_var
    folded = convert_mmdet_ssd(mmdet_state, ratios, 80, source_bn_eps=1e-3)
    model.load_state_dict(folded, strict=True)
    x = torch.randn(2, 256, 5, 5)
    prefix = 'neck.extra_layers.0.1.depthwise_conv.bn'
    ref = torch.nn.BatchNorm2d(256, eps=1e-3).eval()
    ref.load_state_dict({k[len(prefix) + 1:]: mmdet_state[k] for k in spec if k.startswith(prefix)})
    with torch.no_grad():
        torch.testing.assert_close(model.neck.extra_layers[0][1][1](x), ref(x))
        # the whole detector runs on an SSDLite input
        cls, reg = model(torch.randn(1, 3, 320, 320), mode='tensor')
    assert cls.shape == (1, model.bbox_head.anchors(
        model.extract_feat(torch.zeros(1, 3, 320, 320))).shape[0], 81)


def test_checkpoint_entry_point_and_errors(ssd300_voc):
    model_cfg, spec, mmdet_state, _ = ssd300_voc
    cfg = Config.fromfile('configs/ssd300_voc.py')
    from densebox.datasets import VOC_CLASSES
    ckpt = {'state_dict': mmdet_state, 'meta': {'CLASSES': VOC_CLASSES}}
    converted = convert_mmdet_ssd_checkpoint(ckpt, cfg)
    assert converted.keys() == MODELS.build(cfg.model).state_dict().keys()
    with pytest.raises(ValueError, match='differ from the config'):
        convert_mmdet_ssd_checkpoint({'state_dict': mmdet_state,
                                      'meta': {'CLASSES': VOC_CLASSES[::-1]}}, cfg)
    with pytest.raises(ValueError, match='predicts 20 classes, the config 80'):
        convert_mmdet_ssd(mmdet_state, cfg.model.bbox_head.anchor_generator.ratios, 80)
    extra = dict(mmdet_state, **{'bbox_head.something.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match='bbox_head.something.weight'):
        convert_mmdet_ssd(extra, cfg.model.bbox_head.anchor_generator.ratios)
    legacy = dict(mmdet_state, **{'backbone.extra.0.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match='< 2.14'):
        convert_mmdet_ssd(legacy, cfg.model.bbox_head.anchor_generator.ratios)

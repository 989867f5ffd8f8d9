"""FPN neck, Semantic FPN head and UperNet head: shapes (odd sizes too), gradients, and
outputs against plain re-statements of each computation written with torch.nn.functional."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from densebox.models.necks import FPN
from densebox.models.seg_heads import FPNHead, UPerHead
from densebox.registry import MODELS

init_default_scope('densebox')


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so that a wrong wiring cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.dtype.is_floating_point:
                if name.endswith('running_var'):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return module


def _pyramid(channels, size, seed=0):
    """Backbone-like features of a (size) input at strides 4, 8, 16, 32 (ceil division,
    as padded convs give), finest first."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    feats = []
    for i, c in enumerate(channels):
        s = 4 * 2 ** i
        feats.append(torch.randn(2, c, -(-h // s), -(-w // s), generator=g))
    return tuple(feats)


def _conv(x, unit, stride=1):
    """A ConvBNAct (conv, optional eval-mode BN, optional ReLU) written out."""
    k = unit.conv.weight.shape[-1]
    y = F.conv2d(x, unit.conv.weight, unit.conv.bias, stride=stride, padding=k // 2)
    if unit.bn is not None:
        bn = unit.bn
        y = ((y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None]
                                                              + bn.eps)
             * bn.weight[:, None, None] + bn.bias[:, None, None])
    if unit.act is not None:
        y = y.clamp(min=0)
    return y


def _check_all_grads(module, loss):
    loss.backward()
    missing = [n for n, p in module.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f'no gradient reaches {missing}'


# ---------------------------------------------------------------------- FPN neck
@pytest.mark.parametrize('size', [(64, 64), (100, 75), (33, 47)])
def test_fpn_neck_matches_plain_computation(size):
    chans = (8, 16, 24, 32)
    neck = _randomize(FPN(chans, 12, num_outs=4)).eval()
    feats = _pyramid(chans, size)
    with torch.no_grad():
        outs = neck(feats)
        lat = [F.conv2d(x, m.conv.weight, m.conv.bias) for x, m in zip(feats, neck.lateral_convs)]
        for i in (3, 2, 1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:],
                                                    mode='nearest')
        ref = [F.conv2d(x, m.conv.weight, m.conv.bias, padding=1)
               for x, m in zip(lat, neck.fpn_convs)]
    assert len(outs) == 4
    for out, r, x in zip(outs, ref, feats):
        assert out.shape == (2, 12) + x.shape[-2:]
        torch.testing.assert_close(out, r)


def test_fpn_neck_semantic_fpn_param_count():
    # Semantic FPN on ResNet-50: 1x1 laterals and 3x3 outputs, all with bias, no norm.
    neck = FPN((256, 512, 1024, 2048), 256, num_outs=4)
    expected = sum(c * 256 + 256 for c in (256, 512, 1024, 2048)) + 4 * (9 * 256 * 256 + 256)
    assert sum(p.numel() for p in neck.parameters()) == expected


def test_fpn_neck_extra_levels_and_start_level():
    chans = (8, 16, 24, 32)
    feats = _pyramid(chans, (64, 96))
    pooled = FPN(chans, 8, num_outs=6).eval()
    with torch.no_grad():
        outs = pooled(feats)
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2),
                                                   (1, 1)]
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])  # 1x1 max pool, stride 2

    on_input = _randomize(FPN(chans, 8, num_outs=5, start_level=1,
                              add_extra_convs='on_input', relu_before_extra_convs=True)).eval()
    with torch.no_grad():
        outs = on_input(feats)
        extra1 = F.conv2d(feats[3], on_input.fpn_convs[3].conv.weight,
                          on_input.fpn_convs[3].conv.bias, stride=2, padding=1)
        extra2 = F.conv2d(extra1.clamp(min=0), on_input.fpn_convs[4].conv.weight,
                          on_input.fpn_convs[4].conv.bias, stride=2, padding=1)
    assert len(on_input.lateral_convs) == 3
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    torch.testing.assert_close(outs[3], extra1)
    torch.testing.assert_close(outs[4], extra2)

    normed = FPN(chans, 8, num_outs=4, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'),
                 no_norm_on_lateral=True)
    assert normed.lateral_convs[0].bn is None and normed.fpn_convs[0].bn is not None
    _check_all_grads(normed, sum(o.square().mean() for o in normed(feats)))


def test_fpn_neck_errors():
    with pytest.raises(ValueError, match='num_outs=2 must be >= the 4 used levels'):
        FPN((8, 16, 24, 32), 8, num_outs=2)
    with pytest.raises(ValueError, match='add_extra_convs'):
        FPN((8, 16), 8, num_outs=3, add_extra_convs='on_everything')
    with pytest.raises(ValueError, match='end_level'):
        FPN((8, 16), 8, num_outs=2, start_level=2)
    with pytest.raises(ValueError, match='expected 2 input features'):
        FPN((8, 16), 8, num_outs=2)((torch.zeros(1, 8, 4, 4),))


def test_fpn_neck_xavier_init_cfg():
    neck = FPN((8, 16), 8, num_outs=2)
    with torch.no_grad():
        for p in neck.parameters():
            p.fill_(3.0)
    neck.init_weights()
    w = neck.fpn_convs[0].conv.weight
    bound = (6.0 / (9 * 8 + 9 * 8)) ** 0.5  # Xavier uniform of a 3x3 conv, 8 -> 8
    assert w.abs().max() <= bound and w.std() > bound / 4
    assert neck.fpn_convs[0].conv.bias.abs().max() == 0


# ---------------------------------------------------------------------- Semantic FPN head
def _fpn_head(**kw):
    cfg = dict(in_channels=(12, 12, 12, 12), feature_strides=(4, 8, 16, 32), channels=8,
               num_classes=5, dropout_ratio=0.1)
    cfg.update(kw)
    return FPNHead(**cfg)


def test_fpn_head_structure_follows_the_stride_rule():
    head = _fpn_head()
    convs = [sum(isinstance(m, nn.Conv2d) for m in h.modules()) for h in head.scale_heads]
    assert convs == [1, 1, 2, 3]  # max(1, log2(stride / 4))
    assert isinstance(head.scale_heads[0][0].bn, nn.BatchNorm2d)
    # Semantic FPN as in MMSegmentation: FPN(256) -> head(128) for ADE20K's 150 classes.
    big = FPNHead(in_channels=(256,) * 4, feature_strides=(4, 8, 16, 32), channels=128,
                  num_classes=150)
    conv_bn = lambda cin, cout: 9 * cin * cout + 2 * cout  # noqa: E731
    expected = (conv_bn(256, 128) * 4 + conv_bn(128, 128) * (1 + 2)) + 128 * 150 + 150
    assert sum(p.numel() for p in big.parameters()) == expected


@pytest.mark.parametrize('size', [(128, 128), (100, 75), (36, 52)])
def test_fpn_head_matches_plain_computation(size):
    head = _randomize(_fpn_head()).eval()
    feats = _pyramid((12,) * 4, size)
    with torch.no_grad():
        out = head(feats)
        total = None
        for i, x in enumerate(feats):
            units = [m for m in head.scale_heads[i] if not hasattr(m, 'align_corners')]
            for unit in units:
                x = _conv(x, unit)
                if i > 0:
                    x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
            if total is None:
                total = x
            else:
                total = total + F.interpolate(x, size=total.shape[-2:], mode='bilinear',
                                              align_corners=False)
        ref = F.conv2d(total, head.conv_seg.weight, head.conv_seg.bias)
    assert out.shape == (2, 5) + feats[0].shape[-2:]
    torch.testing.assert_close(out, ref)


def test_fpn_head_gradients_and_errors():
    head = _fpn_head()
    feats = _pyramid((12,) * 4, (100, 75))
    _check_all_grads(head, head(feats).square().mean())
    with pytest.raises(ValueError, match='same length'):
        _fpn_head(feature_strides=(4, 8, 16))
    with pytest.raises(ValueError, match='powers of 2'):
        _fpn_head(feature_strides=(4, 8, 12, 32))
    with pytest.raises(ValueError, match='powers of 2'):
        _fpn_head(feature_strides=(32, 16, 8, 4))


# ---------------------------------------------------------------------- UperNet head
def _uper_head(**kw):
    cfg = dict(in_channels=(6, 10, 14, 18), channels=8, num_classes=5, pool_scales=(1, 2, 3, 6))
    cfg.update(kw)
    return UPerHead(**cfg)


def _uper_reference(head, feats):
    x = feats[-1]
    pooled = [x]
    for branch in head.psp_modules:
        p = F.adaptive_avg_pool2d(x, branch[0].output_size)
        p = _conv(p, branch[1])
        pooled.append(F.interpolate(p, size=x.shape[-2:], mode='bilinear',
                                    align_corners=False))
    top = _conv(torch.cat(pooled, 1), head.bottleneck)
    lat = [_conv(f, m) for f, m in zip(feats[:-1], head.lateral_convs)] + [top]
    for i in range(len(lat) - 1, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:],
                                                mode='bilinear', align_corners=False)
    outs = [_conv(l, m) for l, m in zip(lat[:-1], head.fpn_convs)] + [lat[-1]]
    outs = [F.interpolate(o, size=outs[0].shape[-2:], mode='bilinear', align_corners=False)
            for o in outs]
    fused = _conv(torch.cat(outs, 1), head.fpn_bottleneck)
    return F.conv2d(fused, head.conv_seg.weight, head.conv_seg.bias)


@pytest.mark.parametrize('size', [(128, 128), (100, 75), (200, 140)])
def test_uper_head_matches_plain_computation(size):
    head = _randomize(_uper_head()).eval()
    feats = _pyramid((6, 10, 14, 18), size)
    with torch.no_grad():
        out = head(feats)
        ref = _uper_reference(head, feats)
    assert out.shape == (2, 5) + feats[0].shape[-2:]
    torch.testing.assert_close(out, ref)


def test_uper_head_param_names_gradients_and_errors():
    head = _uper_head()
    names = set(head.state_dict())
    for key in ('psp_modules.3.1.conv.weight', 'bottleneck.bn.running_mean',
                'lateral_convs.2.conv.weight', 'fpn_convs.2.bn.weight',
                'fpn_bottleneck.conv.weight', 'conv_seg.weight'):
        assert key in names, key
    assert 'lateral_convs.3.conv.weight' not in names  # the top level goes through the PPM
    feats = _pyramid((6, 10, 14, 18), (100, 75))
    _check_all_grads(head, head(feats).square().mean())
    with pytest.raises(ValueError, match='pool_scales'):
        _uper_head(pool_scales=(0, 1))
    with pytest.raises(ValueError, match='in_index'):
        _uper_head(in_index=(0, 1, 2))


# ---------------------------------------------------------------------- in a segmentor
class _TinyPyramid(nn.Module):
    """Test stub: four strided convs -> features at strides 4, 8, 16, 32."""

    def __init__(self, channels=(8, 16, 24, 32)):
        super().__init__()
        self.stem = nn.Conv2d(3, channels[0], 4, stride=4)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                                   for a, b in zip(channels[:-1], channels[1:]))

    def forward(self, x):
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return tuple(feats)


MODELS.register_module(name='_TinyPyramid', module=_TinyPyramid, force=True)


@pytest.mark.parametrize('head', ['fpn', 'uper'])
def test_decoders_in_an_encoder_decoder(head):
    from densebox.structures import SegDataSample
    from mmengine.structures import PixelData
    neck = dict(type='FPN', in_channels=[8, 16, 24, 32], out_channels=16, num_outs=4)
    if head == 'fpn':
        decode = dict(type='FPNHead', in_channels=[16] * 4, in_index=[0, 1, 2, 3],
                      feature_strides=[4, 8, 16, 32], channels=8, num_classes=3)
    else:
        neck = None
        decode = dict(type='UPerHead', in_channels=[8, 16, 24, 32], channels=8, num_classes=3)
    model = MODELS.build(dict(type='EncoderDecoder', backbone=dict(type='_TinyPyramid'),
                              neck=neck, decode_head=decode))
    x = torch.randn(2, 3, 64, 96)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 64, 96)))
        samples.append(s)
    losses = model(x, samples, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'])
    losses['decode.loss_ce'].backward()
    assert model.backbone.stem.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.eval()(x, mode='tensor').shape == (2, 3, 16, 24)

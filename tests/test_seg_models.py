"""Segmentation models: FFNet ResNets, MobileNetV2, decode heads, loss, EncoderDecoder,
and the model / schedule base configs."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

# Importing the modules registers the classes.
from densebox.models.backbones.ffnet_resnet import ARCHS, FAMILIES, FFNetResNet, parse_arch
from densebox.models.backbones.mobilenet_v2 import (MobileNetV2,
                                                    convert_torchvision_state_dict)
from densebox.models.losses.cross_entropy import CrossEntropyLoss
from densebox.models.seg_heads import ASPPHead, FCNHead, FFNetUpHead
from densebox.models.segmentors.encoder_decoder import EncoderDecoder
from densebox.models.utils import count_parameters
from densebox.models import data_preprocessor  # noqa: F401  (SegDataPreprocessor)
from densebox.registry import MODELS
from densebox.structures import SegDataSample

init_default_scope('densebox')


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    # Tiny convs run faster on one thread, above all on a shared, loaded CPU.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BN statistics, so that a wrong mapping cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.dtype.is_floating_point:
                if name.endswith('running_var'):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model


# ---------------------------------------------------------------------- FFNet backbone
def _ffnet_reference_params(arch: str) -> int:
    """Parameter count written out from the architecture description."""
    family, blocks, down = parse_arch(arch)
    spec = FAMILIES[family]

    def conv_bn(cin, cout, k):
        return k * k * cin * cout + 2 * cout

    if family == 'A':
        total, cin = conv_bn(3, 64, 7), 64
    elif family == 'S':
        total, cin = conv_bn(3, 32, 3) + conv_bn(32, 64, 3), 64
    else:
        total, cin = conv_bn(3, 64, 3) + conv_bn(64, 64, 3) + conv_bn(64, 64, 3), 64
    strides = [2] * len(blocks)
    if len(blocks) == 4 and not down:
        strides[0] = 1
    for n, width, stride in zip(blocks, spec['widths'], strides):
        for b in range(n):
            total += conv_bn(cin, width, 3) + conv_bn(width, width, 3)
            if b == 0 and (stride != 1 or cin != width):
                total += conv_bn(cin, width, 1)
            cin = width
    return total


@pytest.mark.parametrize('arch', list(ARCHS) + ['d18', 'd150', 'd78S', 'd40S'])
def test_ffnet_archs_shapes_strides_params(arch):
    # Built on the meta device: shapes and parameter counts without allocating weights.
    # The forward (shape propagation) runs for the smallest arch of each family.
    with torch.device('meta'):
        model = FFNetResNet(arch).eval()
    family, blocks, down = parse_arch(arch)
    expected_strides = (8, 16, 32, 64) if down else (4, 8, 16, 32)
    assert model.out_strides == expected_strides
    if arch in ('18', 'd18', '22S', 'd40S', '46N', '46NS'):
        with torch.device('meta'):
            outs = model(torch.empty(2, 3, 256, 128))
        assert len(outs) == 4
        for out, c, s in zip(outs, model.out_channels, expected_strides):
            assert tuple(out.shape) == (2, c, 256 // s, 128 // s)
    if family in ('N', 'NS'):
        assert model.out_channels == (64,) + FAMILIES[family]['widths']
    else:
        assert model.out_channels == FAMILIES[family]['widths']
    assert count_parameters(model) == _ffnet_reference_params(arch)
    # the number in the name is the depth: 2 convs per block + 2 (A, S) or 3 (N, NS; their
    # names count one less)
    depth = 2 * sum(blocks) + {'A': 2, 'S': 2, 'N': 3, 'NS': 3}[family]
    assert abs(depth - int(arch.lstrip('d').rstrip('NS'))) <= 1


def test_ffnet_a_family_is_torchvision_resnet():
    """'18' / '34' are torchvision's ResNet-18/34 without fc: same params, same features."""
    for arch, tv_fn in (('18', torchvision.models.resnet18), ('34', torchvision.models.resnet34)):
        with torch.device('meta'):
            n_ours = count_parameters(FFNetResNet(arch))
            tv = tv_fn()
        assert n_ours == count_parameters(tv) - tv.fc.weight.numel() - tv.fc.bias.numel()
    tv = _randomize(torchvision.models.resnet18()).eval()
    ours = FFNetResNet('18').eval()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith('fc.')}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        ref = []
        for layer in (tv.layer1, tv.layer2, tv.layer3, tv.layer4):
            y = layer(y)
            ref.append(y)
        outs = ours(x)
    for a, b in zip(outs, ref):
        torch.testing.assert_close(a, b)


def test_ffnet_out_indices_frozen_and_errors():
    model = FFNetResNet('22S', out_indices=(1, 3), frozen_stages=1, norm_eval=True)
    assert model.out_channels == (128, 320) and model.out_strides == (8, 32)
    model.train()
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert not model.conv0.weight.requires_grad
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer3[0].bn1.training  # norm_eval keeps BN in eval mode
    outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 128, 8, 8), (2, 320, 2, 2)]
    with pytest.raises(ValueError, match='unknown arch'):
        FFNetResNet('77S')
    with pytest.raises(ValueError, match='"d" variant'):
        FFNetResNet('d46N')
    with pytest.raises(ValueError, match='out_indices'):
        FFNetResNet('22S', out_indices=(4,))


# ---------------------------------------------------------------------- MobileNetV2
def test_mobilenet_v2_matches_torchvision_architecture_and_weights():
    tv = _randomize(torchvision.models.mobilenet_v2()).eval()
    ours = MobileNetV2(out_indices=(7,))
    classifier_params = tv.classifier[1].weight.numel() + tv.classifier[1].bias.numel()
    assert count_parameters(ours) + classifier_params == count_parameters(tv) == 3_504_872
    converted = convert_torchvision_state_dict(tv.state_dict())
    assert set(converted) == set(ours.state_dict())  # every key mapped, none left over
    ours.load_torchvision_state_dict(tv.state_dict())
    ours.eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        feat = ours(x)[0]
        torch.testing.assert_close(feat, tv.features(x))
        logits = tv.classifier(F.adaptive_avg_pool2d(feat, 1).flatten(1))
        torch.testing.assert_close(logits, tv(x))


def test_mobilenet_v2_pretrained_init_cfg_converts_torchvision_keys(tmp_path):
    tv = _randomize(torchvision.models.mobilenet_v2(), seed=3).eval()
    path = tmp_path / 'mnv2_tv.pth'
    torch.save(tv.state_dict(), path)
    ours = MobileNetV2(out_indices=(6,), output_stride=16,
                       init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    assert ours.conv_last is None  # the 1280 conv is not built (and its keys are dropped)
    ours.init_weights()
    torch.testing.assert_close(ours.stages[5][1].depthwise.bn.running_var,
                               tv.features[15].conv[1][1].running_var)
    torch.testing.assert_close(ours.stem.conv.weight, tv.features[0][0].weight)


def test_mobilenet_v2_taps_strides_and_dilation():
    taps = (0, 1, 2, 3, 4, 'layer15_expansion', 5, 6, 7)
    expected_channels = (16, 24, 32, 64, 96, 576, 160, 320, 1280)
    for os_, strides in ((32, (2, 4, 8, 16, 16, 16, 32, 32, 32)),
                         (16, (2, 4, 8, 16, 16, 16, 16, 16, 16)),
                         (8, (2, 4, 8, 8, 8, 8, 8, 8, 8))):
        model = MobileNetV2(out_indices=taps, output_stride=os_).eval()
        assert model.out_channels == expected_channels
        assert model.out_strides == strides
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 64, 64))
        for out, c, s in zip(outs, expected_channels, strides):
            assert tuple(out.shape) == (1, c, 64 // s, 64 // s)
    # Dilation changes no weight, and layers before the target stride are untouched.
    m32 = _randomize(MobileNetV2(out_indices=(4, 'layer15_expansion', 6))).eval()
    m16 = MobileNetV2(out_indices=(4, 'layer15_expansion', 6), output_stride=16).eval()
    m16.load_state_dict(m32.state_dict())
    assert m16.stages[5][0].depthwise.conv.stride == (1, 1)
    assert m16.stages[5][0].depthwise.conv.dilation == (1, 1)  # keeps the current rate
    assert m16.stages[5][1].depthwise.conv.dilation == (2, 2)
    assert m16.stages[6][0].depthwise.conv.dilation == (2, 2)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = m32(x), m16(x)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert b[2].shape[-1] == 2 * a[2].shape[-1]
    # The expansion tap is the first stage-5 block's expansion output.
    with torch.no_grad():
        x4 = m32.stages[4](m32.stages[3](m32.stages[2](m32.stages[1](
            m32.stages[0](m32.stem(x))))))
        torch.testing.assert_close(a[1], m32.stages[5][0].expand(x4))
    with pytest.raises(ValueError, match='out_indices'):
        MobileNetV2(out_indices=(8,))
    with pytest.raises(ValueError, match='output_stride'):
        MobileNetV2(output_stride=4)


def test_mobilenet_v2_frozen_stages():
    model = MobileNetV2(out_indices=(6,), frozen_stages=2, norm_eval=True).train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert not model.stages[4][0].depthwise.bn.training


# ---------------------------------------------------------------------- heads and loss
def test_cross_entropy_loss_against_torch():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, 9)
    label = torch.randint(0, 5, (2, 7, 9))
    label[0, :3] = 255
    valid = (label != 255).sum()
    ref_mean_valid = F.cross_entropy(logits, label, ignore_index=255)
    loss = CrossEntropyLoss(avg_non_ignore=True)(logits, label)
    torch.testing.assert_close(loss, ref_mean_valid)
    loss_all = CrossEntropyLoss(avg_non_ignore=False, loss_weight=2.0)(logits, label)
    torch.testing.assert_close(loss_all, 2.0 * ref_mean_valid * valid / label.numel())
    w = [1.0, 2.0, 0.5, 1.0, 3.0]
    ref_w = F.cross_entropy(logits, label, weight=torch.tensor(w), ignore_index=255,
                            reduction='sum') / valid
    torch.testing.assert_close(CrossEntropyLoss(avg_non_ignore=True, class_weight=w)(
        logits, label), ref_w)
    # all pixels ignored: zero, not NaN
    assert CrossEntropyLoss(avg_non_ignore=True)(logits, torch.full_like(label, 255)) == 0
    with pytest.raises(ValueError, match='do not match'):
        CrossEntropyLoss()(logits, label[:, :3])


@pytest.mark.parametrize('up_head,seg_head', [('A', 'A'), ('B', 'B'), ('C', 'C'), ('A', 'C')])
def test_ffnet_up_head_shapes(up_head, seg_head):
    head = FFNetUpHead(in_channels=(64, 128, 192, 320), num_classes=7, up_head=up_head,
                       seg_head=seg_head, upsample_mode='nearest').eval()
    feats = tuple(torch.randn(2, c, 64 // s, 48 // s)
                  for c, s in zip((64, 128, 192, 320), (4, 8, 16, 32)))
    with torch.no_grad():
        out = head(feats)
    assert tuple(out.shape) == (2, 7, 16, 12)
    assert head.channels == {'A': 512, 'B': 256, 'C': 128}[seg_head]
    assert head.conv_seg.kernel_size == ((3, 3) if seg_head == 'B' else (1, 1))
    with pytest.raises(ValueError, match='up_head'):
        FFNetUpHead(in_channels=(64, 128, 192, 320), num_classes=7, up_head='D')


def test_ffnet_up_head_b_param_count():
    """B up-head + B seg-head on a slim backbone, counted layer by layer."""
    head = FFNetUpHead(in_channels=(64, 128, 192, 320), num_classes=19, up_head='B',
                       seg_head='B')

    def cbr(cin, cout, k):
        return k * k * cin * cout + 2 * cout
    adapter, outs = (64, 128, 128, 256), (96, 96, 64, 32)
    expected = sum(cbr(i, o, 1) for i, o in zip((64, 128, 192, 320), adapter))
    expected += sum(cbr(adapter[i + 1], adapter[i], 1) for i in range(3))
    expected += sum(cbr(adapter[i], outs[i], 3) for i in range(4))
    expected += cbr(sum(outs), 256, 3) + 9 * 256 * 19 + 19
    assert count_parameters(head) == expected


def test_aspp_head_param_counts_match_paper():
    mobile = ASPPHead(in_channels=320, channels=256, num_classes=21, dilations=())
    full = ASPPHead(in_channels=320, channels=256, num_classes=21, dilations=(6, 12, 18))
    backbone = MobileNetV2(out_indices=(6,), output_stride=16)
    n_mobile = count_parameters(backbone) + count_parameters(mobile)
    n_full = count_parameters(backbone) + count_parameters(full)
    print(f'\nMobile DeepLabv3 params: {n_mobile:,} (paper 2.11M); '
          f'with ASPP (6, 12, 18): {n_full:,} (paper 4.52M)')
    assert abs(n_mobile / 2.11e6 - 1) < 0.01
    assert abs(n_full / 4.52e6 - 1) < 0.01
    x = (torch.randn(2, 320, 5, 7),)
    assert tuple(full.eval()(x).shape) == (2, 21, 5, 7)


def test_fcn_head():
    head = FCNHead(in_channels=32, channels=16, num_classes=4, num_convs=2, in_index=1)
    out = head.eval()((torch.randn(1, 8, 9, 9), torch.randn(1, 32, 5, 6)))
    assert tuple(out.shape) == (1, 4, 5, 6)
    with pytest.raises(ValueError, match='in_channels == channels'):
        FCNHead(in_channels=32, channels=16, num_classes=4, num_convs=0)


# ---------------------------------------------------------------------- EncoderDecoder
@MODELS.register_module(force=True)
class _PixelwiseBackbone(nn.Module):
    """Test stub: a 1x1 conv at stride 1, so every output pixel depends on one input
    pixel only and sliding-window inference must equal whole-image inference."""

    def __init__(self, channels=8):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)

    def forward(self, x):
        return (torch.tanh(self.conv(x)),)


def _pixelwise_model(**test_cfg):
    return EncoderDecoder(
        backbone=dict(type='_PixelwiseBackbone', channels=8),
        decode_head=dict(type='FCNHead', in_channels=8, channels=8, num_classes=3,
                         num_convs=0, concat_input=False, kernel_size=1, in_index=0,
                         dropout_ratio=0.0),
        test_cfg=test_cfg or None).eval()


def _mnv2_aspp_cfg(num_classes=4, aux=None, **test_cfg):
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], pad_size_divisor=16),
        backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(2, 6),
                      output_stride=16),
        decode_head=dict(type='ASPPHead', in_channels=160, in_index=1, channels=32,
                         num_classes=num_classes, dropout_ratio=0.0,
                         loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True)),
        auxiliary_head=aux,
        test_cfg=test_cfg or None)


def _ffnet_cfg(num_classes=4):
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], pad_size_divisor=32),
        backbone=dict(type='FFNetResNet', arch='22S'),
        decode_head=dict(type='FFNetUpHead', in_channels=(64, 128, 192, 320),
                         num_classes=num_classes, up_head='C', seg_head='C',
                         loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True)))


def _batch(num_images=2, size=(64, 64), num_classes=4, seed=0):
    """Random images whose label is a function of the pixel colour (learnable)."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(num_images):
        label = torch.randint(0, num_classes, (1, size[0] // 16, size[1] // 16), generator=g)
        label = label.repeat_interleave(16, 1).repeat_interleave(16, 2)
        palette = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]])
        img = palette[label[0] % 4].permute(2, 0, 1).to(torch.uint8)
        label[:, :4, :4] = 255
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size))
        sample.gt_sem_seg = PixelData(data=label)
        inputs.append(img)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_encoder_decoder_loss_keys_and_backprop():
    aux = [dict(type='FCNHead', in_channels=16, in_index=0, channels=8, num_classes=4,
                num_convs=1, loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
           dict(type='FCNHead', in_channels=160, in_index=1, channels=8, num_classes=4,
                num_convs=1, loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4))]
    model = MODELS.build(_mnv2_aspp_cfg(aux=aux))
    data = model.data_preprocessor(_batch(), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg', 'aux_0.loss_ce',
                           'aux_0.acc_seg', 'aux_1.loss_ce', 'aux_1.acc_seg'}
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert model.backbone.stem.conv.weight.grad is not None
    assert model.backbone.stem.conv.weight.grad.abs().sum() > 0

    single = MODELS.build(_mnv2_aspp_cfg(aux=aux[1]))
    losses = single(**single.data_preprocessor(_batch(), training=True), mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    with torch.no_grad():
        assert tuple(single(data['inputs'], mode='tensor').shape) == (2, 4, 4, 4)


def test_slide_equals_whole_when_window_covers_image():
    torch.manual_seed(0)
    whole = MODELS.build(_mnv2_aspp_cfg()).eval()
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        ref = whole.inference(x)
        for crop in ((48, 64), (64, 96)):
            slide = MODELS.build(_mnv2_aspp_cfg(mode='slide', crop_size=crop, stride=(16, 16)))
            slide.load_state_dict(whole.state_dict())
            torch.testing.assert_close(slide.eval().inference(x), ref)


def test_slide_inference_averages_overlapping_windows():
    # A per-pixel model: any window layout must reproduce whole-image inference exactly.
    whole = _pixelwise_model()
    slide = _pixelwise_model(mode='slide', crop_size=(16, 20), stride=(10, 7),
                             batch_windows=3)
    slide.load_state_dict(whole.state_dict())
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(slide.inference(x), whole.inference(x))

    # A real (context-dependent) model against a plainly written window loop.
    model = MODELS.build(_ffnet_cfg()).eval()
    model.test_cfg = dict(mode='slide', crop_size=(32, 32), stride=(20, 24))
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        out = model.inference(x)
        ref = torch.zeros(1, 4, 50, 70)
        cnt = torch.zeros(1, 1, 50, 70)
        y = 0
        while True:
            y1 = min(y, 50 - 32)
            xx = 0
            while True:
                x1 = min(xx, 70 - 32)
                ref[:, :, y1:y1 + 32, x1:x1 + 32] += model.encode_decode(
                    x[:, :, y1:y1 + 32, x1:x1 + 32])
                cnt[:, :, y1:y1 + 32, x1:x1 + 32] += 1
                if x1 + 32 >= 70:
                    break
                xx += 24
            if y1 + 32 >= 50:
                break
            y += 20
    torch.testing.assert_close(out, ref / cnt)
    with pytest.raises(ValueError, match='exceeds crop_size'):
        _pixelwise_model(mode='slide', crop_size=(8, 8), stride=(9, 4))


def test_predict_crops_padding_resizes_to_ori_shape_and_undoes_flip():
    model = _pixelwise_model()
    img = torch.randn(1, 3, 20, 30)
    padded = F.pad(img, (0, 2, 0, 4), value=7.0)  # bottom / right padding to 24 x 32
    ori = (40, 60)
    meta = dict(img_shape=(20, 30), ori_shape=ori)
    def pad(t):
        return F.pad(t, (0, 2, 0, 4), value=7.0)

    def flip_meta(direction):
        return [SegDataSample(metainfo=dict(meta, flip=True, flip_direction=direction))]

    with torch.no_grad():
        plain = model.predict(padded, [SegDataSample(metainfo=meta)])[0]
        # the network sees a flipped image; predict must flip the result back
        flipped = model.predict(pad(img.flip(-1)), flip_meta('horizontal'))[0]
        vflipped = model.predict(pad(img.flip(-2)), flip_meta('vertical'))[0]
        ref = F.interpolate(model.encode_decode(img), size=ori, mode='bilinear',
                            align_corners=False)[0]
    assert tuple(plain.seg_logits.data.shape) == (3, 40, 60)
    assert tuple(plain.pred_sem_seg.data.shape) == (1, 40, 60)
    torch.testing.assert_close(plain.seg_logits.data, ref)
    torch.testing.assert_close(plain.pred_sem_seg.data, ref.argmax(0, keepdim=True))
    torch.testing.assert_close(flipped.seg_logits.data, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vflipped.seg_logits.data, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='flip_direction'):
        model.predict(padded, [SegDataSample(metainfo=dict(meta, flip=True,
                                                           flip_direction='sideways'))])


def test_predict_through_data_preprocessor():
    model = MODELS.build(_mnv2_aspp_cfg()).eval()
    data = _batch(num_images=2, size=(40, 56))  # padded to 48 x 64 by the preprocessor
    for s in data['data_samples']:
        del s.gt_sem_seg  # (not needed to predict)
        s.set_metainfo(dict(ori_shape=(80, 112)))
    with torch.no_grad():
        results = model.test_step(data)
    assert len(results) == 2
    for r in results:
        assert tuple(r.pred_sem_seg.data.shape) == (1, 80, 112)
        assert tuple(r.seg_logits.data.shape) == (4, 80, 112)


@pytest.mark.parametrize('make_cfg,lr,steps', [(_ffnet_cfg, 0.05, 8), (_mnv2_aspp_cfg, 0.1, 12)],
                         ids=['ffnet', 'mnv2_aspp'])
def test_a_few_sgd_steps_reduce_the_loss(make_cfg, lr, steps):
    torch.manual_seed(0)
    model = MODELS.build(make_cfg())
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    batch = _batch(num_images=2, size=(64, 64))
    history = []
    for _ in range(steps):
        log = model.train_step(copy.deepcopy(batch), optim)
        history.append(log['decode.loss_ce'].item())
    assert sum(history[-3:]) / 3 < 0.85 * history[0], history


# ---------------------------------------------------------------------- configs
CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', '_base_')


@pytest.mark.parametrize('name,num_classes,stride', [('ffnet_78s_dbbb_mobile', 19, 8),
                                                     ('ffnet_150_aaa', 19, 4),
                                                     ('mobile_deeplabv3', 21, 16)])
def test_model_configs_build_and_run(name, num_classes, stride):
    from mmengine.config import Config
    cfg = Config.fromfile(f'{CONFIG_DIR}/models/{name}.py')
    with torch.device('meta'):  # shapes only: no weights are allocated or loaded
        model = MODELS.build(cfg.model).eval()
        out = model(torch.empty(1, 3, 128, 256), mode='tensor')
    assert tuple(out.shape) == (1, num_classes, 128 // stride, 256 // stride)


@pytest.mark.filterwarnings('ignore:Detected call of')
@pytest.mark.parametrize('name,iters', [('seg_poly_80k', 80000), ('seg_poly_20k', 20000)])
def test_schedule_configs_build(name, iters):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = Config.fromfile(f'{CONFIG_DIR}/schedules/{name}.py')
    net = nn.Linear(2, 2)
    wrapper = build_optim_wrapper(net, cfg.optim_wrapper)
    sched = PARAM_SCHEDULERS.build(dict(cfg.param_scheduler[0], optimizer=wrapper))
    assert wrapper.get_lr()['lr'] == [0.01]
    assert cfg.train_cfg.max_iters == iters == sched.end
    for _ in range(iters // 2):
        sched.step()
    # poly: eta_min + (lr0 - eta_min) * (1 - t / T) ** 0.9, applied step by step
    expected = 1e-4 + (0.01 - 1e-4) * 0.5 ** 0.9
    assert abs(wrapper.get_lr()['lr'][0] - expected) < 1e-6

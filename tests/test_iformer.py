"""iFormer: shapes at any input size, gradients, the official checkpoint layout and its
conversion, and one official block re-stated with torch.nn.functional."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from densebox.converters.iformer import (convert_official_iformer, iformer_official_name,
                                         is_official_iformer)
from densebox.converters.renaming import CheckpointMismatchError
from densebox.models.backbones.iformer import ARCHS, IFormer, IFormerClassifier
from densebox.models.utils import analyze, count_parameters

init_default_scope('densebox')

# A tiny iFormer: the official structure (layer scale in stages 3-4, pooled attention in
# stages 1-2, a per-block attention-head ramp) at toy widths.
TINY = dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), num_heads=(2, 2, 3, 4),
            attention_heads=(1, 1, 1, 2, 3))


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ------------------------------------------------------------------- the official layout
def official_iformer_shapes(arch: dict, img_size: int = 224, num_classes: int = 1000) -> dict:
    """Key -> shape of ``InceptionTransformer.state_dict()``, written out from the official
    model definition (sail-sg/iFormer models/inception_transformer.py)."""
    shapes = {}

    def bn(name, c):
        shapes.update({f'{name}.weight': (c,), f'{name}.bias': (c,), f'{name}.running_mean': (c,),
                       f'{name}.running_var': (c,), f'{name}.num_batches_tracked': ()})

    def conv(name, cin, cout, k, bias=True, groups=1):
        shapes[f'{name}.weight'] = (cout, cin // groups, k, k)
        if bias:
            shapes[f'{name}.bias'] = (cout,)

    def linear(name, cin, cout):
        shapes[f'{name}.weight'] = (cout, cin)
        shapes[f'{name}.bias'] = (cout,)

    dims, depths, heads = arch['dims'], arch['depths'], arch['num_heads']
    conv('patch_embed.proj1', 3, dims[0] // 2, 3)
    bn('patch_embed.norm1', dims[0] // 2)
    conv('patch_embed.proj2', dims[0] // 2, dims[0], 3)
    bn('patch_embed.norm2', dims[0])
    n, block = img_size // 4, 0
    for s in range(4):
        dim = dims[s]
        if s > 0:
            conv(f'patch_embed{s + 1}.proj', dims[s - 1], dim, 3)
            bn(f'patch_embed{s + 1}.norm', dim)
            n //= 2
        shapes[f'pos_embed{s + 1}'] = (1, n, n, dim)
        for j in range(depths[s]):
            p = f'blocks{s + 1}.{j}'
            low = arch['attention_heads'][block] * (dim // heads[s])
            high = dim - low
            block += 1
            shapes[f'{p}.norm1.weight'] = shapes[f'{p}.norm1.bias'] = (dim,)
            conv(f'{p}.attn.high_mixer.conv1', high // 2, high, 1, bias=False)
            conv(f'{p}.attn.high_mixer.proj1', high, high, 3, bias=False, groups=high)
            conv(f'{p}.attn.high_mixer.proj2', high // 2, high, 1)
            linear(f'{p}.attn.low_mixer.qkv', low, 3 * low)
            conv(f'{p}.attn.conv_fuse', low + 2 * high, low + 2 * high, 3, bias=False,
                 groups=low + 2 * high)
            conv(f'{p}.attn.proj', low + 2 * high, dim, 1)
            shapes[f'{p}.norm2.weight'] = shapes[f'{p}.norm2.bias'] = (dim,)
            linear(f'{p}.mlp.fc1', dim, 4 * dim)
            linear(f'{p}.mlp.fc2', 4 * dim, dim)
            if s >= 2:
                shapes[f'{p}.layer_scale_1'] = shapes[f'{p}.layer_scale_2'] = (dim,)
    shapes['norm.weight'] = shapes['norm.bias'] = (dims[3],)
    linear('head', dims[3], num_classes)
    return shapes


def official_state(arch: dict, img_size: int = 224, seed: int = 0, num_classes: int = 1000):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in official_iformer_shapes(arch, img_size, num_classes).items():
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(7)
        elif k.endswith('running_var'):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.1
    return state


# ------------------------------------------------------------------- shapes
@pytest.mark.parametrize('size', [(64, 64), (100, 75), (33, 47), (17, 9)])
def test_output_strides_and_channels_at_any_size(size):
    model = IFormer(TINY, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert model.out_strides == (4, 8, 16, 32) and model.out_channels == TINY['dims']
    for out, stride, c in zip(outs, model.out_strides, model.out_channels):
        assert out.shape == (2, c, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert torch.isfinite(out).all()


def test_real_size_s_shapes_and_out_indices():
    model = IFormer('s', out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 96, 130))
    assert [tuple(o.shape) for o in outs] == [(1, 192, 12, 17), (1, 384, 3, 5)]
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm1')
    with pytest.raises(ValueError, match='out_indices'):
        IFormer('s', out_indices=(4,))
    with pytest.raises(ValueError, match="arch must be one of"):
        IFormer('xl')
    with pytest.raises(ValueError, match='attention_heads needs one entry per block'):
        IFormer(dict(TINY, attention_heads=(1, 1)))


def test_odd_maps_pool_the_partial_window_and_crop_back():
    from densebox.models.backbones.iformer import LowFrequencyMixer
    mixer = LowFrequencyMixer(8, num_heads=2, pool_size=2).eval()
    x = torch.randn(1, 8, 5, 7)
    # The pooled map the attention sees: means of the pixels each 2x2 window covers.
    ref = torch.zeros(1, 8, 3, 4)
    for i in range(3):
        for j in range(4):
            ref[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(dim=(2, 3))
    pooled = F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
    torch.testing.assert_close(pooled, ref)
    with torch.no_grad():
        out = mixer(x)
    assert out.shape == x.shape
    # Pixels of one pooled cell share its attention output (nearest upsampling, cropped).
    torch.testing.assert_close(out[:, :, 2, 2], out[:, :, 3, 3])
    torch.testing.assert_close(out[:, :, 4, 4], out[:, :, 4, 5])
    assert not torch.allclose(out[:, :, 4, 5], out[:, :, 4, 6])


# ------------------------------------------------------------------- training
def test_gradient_reaches_every_parameter_and_checkpointing_matches():
    torch.manual_seed(0)
    model = IFormer(TINY, drop_path_rate=0.0)
    model.train()
    x = torch.randn(2, 3, 40, 56)
    loss = sum(o.square().mean() for o in model(x))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    model.with_cp = True
    loss_cp = sum(o.square().mean() for o in model(x))
    loss_cp.backward()
    torch.testing.assert_close(loss_cp, loss)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)


def test_drop_path_rates_and_stochastic_depth():
    model = IFormer(TINY, drop_path_rate=0.4)
    rates = [b.drop_path.p for s in model.stages for b in s.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    last = model.stages[3].blocks[0]
    last.train()
    torch.manual_seed(0)
    x = torch.randn(64, 2, 2, 64)
    branch = last.drop_path(torch.ones_like(x))
    rows = branch.flatten(1)
    assert torch.equal(rows.amax(1), rows.amin(1))          # a whole sample is dropped or kept
    kept = rows[:, 0]
    assert torch.all((kept == 0) | torch.isclose(kept, torch.tensor(1 / 0.6)))
    assert 0 < (kept == 0).sum() < 64
    last.eval()
    assert torch.equal(last.drop_path(x), x)


# ------------------------------------------------------------------- sizes vs the paper
@pytest.mark.parametrize('arch,params', [('s', 19_866_344), ('b', 47_866_216),
                                         ('l', 86_637_096)])
def test_classifier_param_counts_match_the_official_models(arch, params):
    # The official model files state 19.866M / 47.866M / 86.637M (paper: 20M / 48M / 87M).
    with torch.device('meta'):
        model = IFormerClassifier(arch)
    assert count_parameters(model) == params
    assert params == sum(math.prod(s) for k, s in official_iformer_shapes(ARCHS[arch]).items()
                         if 'running' not in k and 'num_batches' not in k)


def test_iformer_s_flops_match_the_paper():
    with torch.device('meta'):
        model = IFormerClassifier('s')
    madds = analyze(model, (224, 224))['madds']
    # Paper / official file: 4.849 G (their counter also counts norms and pooling).
    assert 4.80e9 < madds < 4.85e9, madds


@pytest.mark.slow
@pytest.mark.parametrize('arch,official', [('b', 9.379e9), ('l', 14.048e9)])
def test_iformer_b_l_flops_match_the_paper(arch, official):
    with torch.device('meta'):
        model = IFormerClassifier(arch)
    madds = analyze(model, (224, 224))['madds']
    assert 0.99 * official < madds < official, madds


# ------------------------------------------------------------------- conversion
def test_official_keys_map_one_to_one_and_back():
    arch = ARCHS['s']
    state = official_state(arch)
    assert is_official_iformer(state)
    converted = convert_official_iformer(state, 's')
    model = IFormer('s')
    own = model.state_dict()
    assert set(converted) == set(own) - {f'norm{i}.{p}' for i in range(3)
                                         for p in ('weight', 'bias')}
    assert 'head.weight' not in converted
    for k, v in converted.items():
        assert v.shape == own[k].shape, k
        assert v is state[iformer_official_name(k)]      # a rename, not a copy
    # Every official key except the classifier is used exactly once.
    back = {iformer_official_name(k) for k in converted}
    assert back == set(state) - {'head.weight', 'head.bias'}

    clf = convert_official_iformer(state, 's', with_head=True)
    assert set(clf) == set(IFormerClassifier('s').state_dict())
    prefixed = convert_official_iformer(state, 's', prefix='backbone.')
    assert all(k.startswith('backbone.stages.') or k.startswith('backbone.norm3')
               for k in prefixed)


def test_wrong_size_or_model_is_an_error_naming_keys_and_shapes():
    small = official_state(ARCHS['s'])
    with pytest.raises(CheckpointMismatchError) as err:
        convert_official_iformer(small, 'b')
    msg = str(err.value)
    assert 'official iFormer-B checkpoint' in msg
    assert ('patch_embed3.proj.weight: (320, 192, 3, 3) in the file, (384, 192, 3, 3) '
            'expected') in msg
    assert 'missing keys: blocks1.3.norm1.weight' in msg
    with pytest.raises(CheckpointMismatchError, match=r'pos_embed1: \(1, 96, 96, 96\) in the '
                                                      r'file, \(1, 56, 56, 96\) expected'):
        convert_official_iformer(official_state(ARCHS['s'], img_size=384), 's')
    # The 384 weights convert with pretrain_img_size=384.
    assert convert_official_iformer(official_state(ARCHS['s'], img_size=384), 's',
                                    pretrain_img_size=384)
    other = {'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(1000, 512)}
    with pytest.raises(CheckpointMismatchError, match='unexpected keys: conv1.weight'):
        convert_official_iformer(other, 's')


def _block_official(state, p, x, num_heads, attention_heads, pool):
    """One official iFormer block on channels-last x (B, H, W, C), re-stated with
    torch.nn.functional from the official definition and the official tensor names."""
    w = lambda name: state[f'{p}.{name}']  # noqa: E731
    B, H, W, C = x.shape
    low = attention_heads * (C // num_heads)
    high = C - low
    y = F.layer_norm(x, (C,), w('norm1.weight'), w('norm1.bias'), eps=1e-6)
    y = y.permute(0, 3, 1, 2)
    hx, lx = y[:, :high], y[:, high:]
    cx = F.gelu(F.conv2d(F.conv2d(hx[:, :high // 2], w('attn.high_mixer.conv1.weight')),
                         w('attn.high_mixer.proj1.weight'), padding=1, groups=high))
    px = F.gelu(F.conv2d(F.max_pool2d(hx[:, high // 2:], 3, 1, 1),
                         w('attn.high_mixer.proj2.weight'), w('attn.high_mixer.proj2.bias')))
    la = F.avg_pool2d(lx, pool) if pool > 1 else lx
    h, ww = la.shape[-2:]
    tokens = la.flatten(2).transpose(1, 2)                              # (B, N, C_l)
    qkv = F.linear(tokens, w('attn.low_mixer.qkv.weight'), w('attn.low_mixer.qkv.bias'))
    q, k, v = qkv.reshape(B, h * ww, 3, attention_heads, -1).permute(2, 0, 3, 1, 4)
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
    la = (attn @ v).permute(0, 1, 3, 2).reshape(B, low, h, ww)          # head-major channels
    if pool > 1:
        la = la.repeat_interleave(pool, 2).repeat_interleave(pool, 3)
    z = torch.cat([cx, px, la], 1)
    z = z + F.conv2d(z, w('attn.conv_fuse.weight'), padding=1, groups=z.shape[1])
    z = F.conv2d(z, w('attn.proj.weight'), w('attn.proj.bias')).permute(0, 2, 3, 1)
    ls1 = state.get(f'{p}.layer_scale_1', torch.ones(C))
    ls2 = state.get(f'{p}.layer_scale_2', torch.ones(C))
    x = x + ls1 * z
    y = F.layer_norm(x, (C,), w('norm2.weight'), w('norm2.bias'), eps=1e-6)
    y = F.linear(F.gelu(F.linear(y, w('mlp.fc1.weight'), w('mlp.fc1.bias'))),
                 w('mlp.fc2.weight'), w('mlp.fc2.bias'))
    return x + ls2 * y


@pytest.mark.parametrize('stage,block,pool', [(0, 0, 2), (2, 1, 1)])
def test_converted_block_computes_the_official_block(stage, block, pool):
    state = official_state(TINY, seed=3)
    model = IFormer(TINY).eval()
    model.load_state_dict(convert_official_iformer(state, TINY), strict=False)
    dim, heads = TINY['dims'][stage], TINY['num_heads'][stage]
    index = sum(TINY['depths'][:stage]) + block
    x = torch.randn(2, 6, 10, dim)
    with torch.no_grad():
        ours = model.stages[stage].blocks[block](x)
        ref = _block_official(state, f'blocks{stage + 1}.{block}', x, heads,
                              TINY['attention_heads'][index], pool)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_pretrained_init_cfg_converts_official_files(tmp_path):
    state = official_state(TINY, seed=5)
    path = tmp_path / 'iformer_tiny_official.pth'
    torch.save(state, path)
    model = IFormer(TINY, out_indices=(1, 2), init_cfg=dict(type='Pretrained',
                                                            checkpoint=str(path)))
    model.init_weights()
    torch.testing.assert_close(model.stages[1].pos_embed, state['pos_embed2'])
    torch.testing.assert_close(model.stages[2].blocks[1].gamma1, state['blocks3.1.layer_scale_1'])
    # A densebox-layout file loads as it is.
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'densebox.pth')
    again = IFormer(TINY, out_indices=(1, 2), init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'densebox.pth')))
    again.init_weights()
    torch.testing.assert_close(again.stages[0].downsample.conv1.weight,
                               state['patch_embed.proj1.weight'])
    wrong = IFormer('s', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match='official iFormer-S checkpoint'):
        wrong.init_weights()


def test_zoo_weights_that_are_not_there_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    model = IFormer(TINY, init_cfg=dict(type='Pretrained', checkpoint='zoo://iformer_s_in1k'))
    with pytest.raises(FileNotFoundError, match='iformer_small.pth'):
        model.init_weights()

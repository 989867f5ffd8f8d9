"""SG-Former: shapes at any input size, gradients, the significance map and token
reallocation on constructed inputs, the official checkpoint layout and its conversion, and
the official hybrid-scale / self-guided blocks re-stated with plain loops."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from densebox.converters.renaming import CheckpointMismatchError
from densebox.converters.sgformer import (convert_official_sgformer, is_official_sgformer,
                                          sgformer_official_name)
from densebox.models.backbones.sgformer import (ARCHS, REALLOCATION, HybridScaleAttention,
                                                SelfGuidedAttention, SGFormer,
                                                SGFormerClassifier, sincos_pos_embed)
from densebox.models.utils import count_parameters

init_default_scope('densebox')

# Hybrid-scale and self-guided blocks in stages 1-3, a global block in stage 4.
TINY = dict(dims=(16, 32, 48, 64), num_heads=(2, 2, 2, 4), depths=(2, 2, 2, 1))


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ------------------------------------------------------------------- the official layout
def official_sgformer_shapes(arch: dict, img_size: int = 224, num_classes: int = 1000) -> dict:
    """Key -> shape of ``SGFormer.state_dict()``, written out from the official model
    definition (OliverRensu/SG-Former sgformer.py)."""
    shapes = {}
    merges = {8: (196, 56, 28), 4: (49, 14, 7), 2: (2, 1)}

    def linear(name, cin, cout, bias=True):
        shapes[f'{name}.weight'] = (cout, cin)
        if bias:
            shapes[f'{name}.bias'] = (cout,)

    def norm(name, c):
        shapes[f'{name}.weight'] = shapes[f'{name}.bias'] = (c,)

    def conv_gn(name, cin, cout, k, groups=1):
        shapes[f'{name}.c.weight'] = (cout, cin // groups, k, k)
        norm(f'{name}.bn', cout)

    dims, depths = arch['dims'], arch['depths']
    conv_gn('patch_embed1.conv.0', 3, dims[0], 3)
    conv_gn('patch_embed1.conv.2', dims[0], dims[0], 3)
    conv_gn('patch_embed1.conv.4', dims[0], dims[0], 3)
    norm('patch_embed1.norm', dims[0])
    for i in range(4):
        dim, sr = dims[i], (8, 4, 2, 1)[i]
        if i:
            conv_gn(f'patch_embed{i + 1}.conv1', dims[i - 1], dim, 1)
            conv_gn(f'patch_embed{i + 1}.conv2', dim, dim, 3, groups=dim)
            conv_gn(f'patch_embed{i + 1}.conv3', dim, dim, 1)
        for j in range(depths[i]):
            p = f'block{i + 1}.{j}'
            norm(f'{p}.norm1', dim)
            if sr > 1 and j % 2:
                linear(f'{p}.attn.q', dim, dim)
                linear(f'{p}.attn.kv1', dim, dim)
                linear(f'{p}.attn.kv2', dim, dim)
                for g, f in enumerate(merges[sr]):
                    linear(f'{p}.attn.f{g + 1}', f, 1)
            elif sr > 1:
                shapes[f'{p}.attn.sr.weight'] = (dim, dim, sr, sr)
                shapes[f'{p}.attn.sr.bias'] = (dim,)
                norm(f'{p}.attn.norm', dim)
                linear(f'{p}.attn.q1', dim, dim // 2)
                linear(f'{p}.attn.kv1', dim, dim)
                linear(f'{p}.attn.q2', dim, dim // 2)
                linear(f'{p}.attn.kv2', dim, dim)
            else:
                linear(f'{p}.attn.q', dim, dim)
                linear(f'{p}.attn.kv', dim, 2 * dim)
            linear(f'{p}.attn.lepe_linear', dim, dim)
            shapes[f'{p}.attn.lepe_conv.weight'] = (dim, 1, 3, 3)
            shapes[f'{p}.attn.lepe_conv.bias'] = (dim,)
            linear(f'{p}.attn.proj', dim, dim)
            norm(f'{p}.norm2', dim)
            linear(f'{p}.mlp.fc1', dim, 4 * dim)
            shapes[f'{p}.mlp.dwconv.dwconv.weight'] = (4 * dim, 1, 3, 3)
            shapes[f'{p}.mlp.dwconv.dwconv.bias'] = (4 * dim,)
            linear(f'{p}.mlp.fc2', 4 * dim, dim)
        norm(f'norm{i + 1}', dim)
    shapes['pos_embed'] = (1, (img_size // 4) ** 2, dims[0])
    linear('head', dims[3], num_classes)
    return shapes


def official_state(arch: dict, seed: int = 0, img_size: int = 224) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.1
            + (1.0 if k.endswith('weight') and len(shape) == 1 else 0.0)   # norms near 1
            for k, shape in official_sgformer_shapes(arch, img_size).items()}


# ------------------------------------------------------------------- shapes
@pytest.mark.parametrize('size', [(64, 64), (100, 75), (33, 47), (17, 9)])
def test_output_strides_and_channels_at_any_size(size):
    model = SGFormer(TINY).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert model.out_strides == (4, 8, 16, 32) and model.out_channels == TINY['dims']
    for out, stride, c in zip(outs, model.out_strides, model.out_channels):
        assert out.shape == (2, c, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert torch.isfinite(out).all()


def test_block_kinds_out_indices_and_errors():
    model = SGFormer('s', out_indices=(2,))
    kinds = [[b.kind for b in s.blocks] for s in model.stages]
    assert kinds[0] == ['hybrid', 'guided'] and kinds[3] == ['global']
    assert kinds[2] == ['hybrid', 'guided'] * 8
    with torch.no_grad():
        (out,) = model.eval()(torch.randn(1, 3, 70, 90))
    assert out.shape == (1, 256, 5, 6)
    with pytest.raises(ValueError, match='out_indices'):
        SGFormer('s', out_indices=(0, 5))
    with pytest.raises(ValueError, match='arch must be one of'):
        SGFormer('t')
    with pytest.raises(ValueError, match='even number of heads'):
        SGFormer(dict(TINY, num_heads=(1, 2, 2, 4)))


def test_sincos_positional_embedding():
    emb = sincos_pos_embed(8, 4)[0]                       # (16 tokens, 8 channels)
    row, col = 2, 3
    token = emb[row * 4 + col]
    omega = 1.0 / 10000 ** (torch.arange(2) / 2)
    expected = torch.cat([torch.sin(col * omega), torch.cos(col * omega),
                          torch.sin(row * omega), torch.cos(row * omega)])
    torch.testing.assert_close(token, expected.float())


# ------------------------------------------------------------------- training
def test_gradient_reaches_every_parameter_and_checkpointing_matches():
    torch.manual_seed(0)
    model = SGFormer(TINY)
    model.train()
    x = torch.randn(2, 3, 60, 44)
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


# ------------------------------------------------------------------- significance
def _indicator_tokens(salient: torch.Tensor, dim: int = 8) -> torch.Tensor:
    """(H, W) bool -> (1, H W, dim) tokens whose channel 0 is 1 on salient tokens."""
    x = torch.zeros(1, salient.numel(), dim)
    x[0, :, 0] = salient.flatten().float()
    return x


def _zero(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def _local_probe(sr=8, dim=8):
    """A hybrid-scale attention whose local queries are constant and whose local keys see
    channel 0 only, so a window's attention goes to its salient tokens; the global half
    attends uniformly."""
    attn = HybridScaleAttention(dim, num_heads=2, sr=sr).eval()
    _zero(attn)
    with torch.no_grad():
        attn.sr_norm.weight.fill_(1.0)
        attn.q_local.bias[0] = 4.0          # q = (4, 0, 0, 0) for every token
        attn.kv_local.weight[0, 0] = 4.0    # k = (4 s, 0, 0, 0), s = salient indicator
    return attn


@pytest.mark.parametrize('size', [(56, 56), (50, 45)])
def test_local_significance_is_high_on_salient_tokens(size):
    H, W = size
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing='ij')
    salient = (rows % 2 == 0) & (cols % 2 == 0)       # a quarter of the tokens, in every window
    attn = _local_probe()
    with torch.no_grad():
        _, sig = attn(_indicator_tokens(salient), H, W)
    assert sig.shape == (1, H, W) and torch.isfinite(sig).all()
    assert sig[0][salient].min() > sig[0][~salient].max()
    if size == (56, 56):
        # no padding: each window's attention (averaged over its queries) sums to 1, split
        # between local (1 per window) and global (uniform: 1 / number of pooled keys)
        windows = sig[0].reshape(8, 7, 8, 7).sum(dim=(1, 3))
        torch.testing.assert_close(windows, torch.full((8, 8), 1.0 + 49 / 49.0))


def test_global_significance_follows_salient_cells():
    H = W = 56
    salient = torch.zeros(H, W, dtype=torch.bool)
    salient[8:16, 16:24] = True                         # two whole 8x8 cells (sr 8)
    salient[48:56, 0:8] = True
    attn = HybridScaleAttention(8, num_heads=2, sr=8).eval()
    _zero(attn)
    with torch.no_grad():
        attn.sr_conv.weight[0, 0] = 1.0 / 64           # pooled channel 0 = salient share
        attn.sr_norm.weight.fill_(1.0)
        attn.q_global.bias[0] = 4.0
        attn.kv_global.weight[0, 0] = 4.0               # keys of salient cells stand out
        _, sig = attn(_indicator_tokens(salient), H, W)
    sig = sig[0]
    assert sig[salient].min() > 2 * sig[~salient].max()
    cells = sig.reshape(7, 8, 7, 8)                     # constant on each pooled cell
    torch.testing.assert_close(cells.amax(dim=(1, 3)), cells.amin(dim=(1, 3)))


@pytest.mark.parametrize('sr', [8, 2])
def test_salient_tokens_land_in_the_fine_group(sr):
    H = W = 56 if sr == 8 else 14
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing='ij')
    salient = (rows % 2 == 0) & (cols % 2 == 0) if sr == 8 else (rows % 2 == 0)
    probe = _local_probe(sr)
    x = _indicator_tokens(salient)
    with torch.no_grad():
        _, sig = probe(x, H, W)
    guided = SelfGuidedAttention(8, num_heads=2, sr=sr).eval()
    with torch.no_grad():
        for merge in guided.merge:                       # merges average their runs
            merge.weight.fill_(1.0 / merge.in_features)
            merge.bias.zero_()
        x_col = x.view(1, H, W, 8).permute(0, 2, 1, 3).reshape(1, H * W, 8)
        rows_seq = guided.reallocate(x, sig.reshape(1, -1))
        cols_seq = guided.reallocate(x_col, sig.permute(0, 2, 1).reshape(1, -1))
    share = salient.float().mean().item()               # 1/4 (sr 8) or 1/2 (sr 2)
    counts = [math.ceil(n * H * W / REALLOCATION[sr]['parts'] / f)
              for n, f in REALLOCATION[sr]['groups']]
    fine = counts[-1]
    assert rows_seq.shape == (1, sum(counts), 8)
    if sr == 8:
        assert (rows_seq.shape[1], counts) == (60, [4, 28, 28])     # the paper's 60 keys
    for seq in (rows_seq, cols_seq):
        # the most significant group holds exactly the salient tokens, the others none
        torch.testing.assert_close(seq[0, -fine:, 0], torch.ones(fine))
        torch.testing.assert_close(seq[0, :-fine, 0], torch.zeros(sum(counts) - fine))
    assert share == pytest.approx(REALLOCATION[sr]['groups'][-1][0] / REALLOCATION[sr]['parts'])


def test_reallocation_pads_a_partial_run_with_its_most_significant_token():
    guided = SelfGuidedAttention(4, num_heads=2, sr=2).eval()
    with torch.no_grad():
        guided.merge[0].weight.copy_(torch.tensor([[1.0, 10.0]]))
        guided.merge[0].bias.zero_()
        guided.merge[1].weight.fill_(1.0)
        guided.merge[1].bias.zero_()
    x = torch.arange(5, dtype=torch.float32).view(1, 5, 1).repeat(1, 1, 4)
    significance = torch.tensor([[0.5, 0.1, 0.4, 0.2, 0.3]])  # order: 1, 3, 4, 2, 0
    with torch.no_grad():
        seq = guided.reallocate(x, significance)
    # groups: the 2 least significant (tokens 1, 3) -> one run; the rest one token each
    assert guided.group_bounds(5) == [(0, 2), (2, 5)]
    torch.testing.assert_close(seq[0, :, 0], torch.tensor([1 + 10 * 3, 4, 2, 0.0]))
    with torch.no_grad():
        seq3 = guided.reallocate(x[:, :3], significance[:, :3])   # low group: 1 token, padded
    torch.testing.assert_close(seq3[0, 0, 0], torch.tensor(1.0 + 10 * 1))


# ------------------------------------------------------------------- the official blocks
def _official_hybrid_block(sd, p, x, H, W, num_heads, sr):
    """The official hybrid-scale block, re-stated with loops over heads and windows."""
    w = lambda n: sd[f'{p}.{n}']  # noqa: E731
    B, N, C = x.shape
    d, half = C // num_heads, num_heads // 2
    y = F.layer_norm(x, (C,), w('norm1.weight'), w('norm1.bias'), eps=1e-6)
    grid = y.transpose(1, 2).reshape(B, C, H, W)
    lepe = F.conv2d(F.linear(y, w('attn.lepe_linear.weight'), w('attn.lepe_linear.bias'))
                    .transpose(1, 2).reshape(B, C, H, W), w('attn.lepe_conv.weight'),
                    w('attn.lepe_conv.bias'), padding=1, groups=C).flatten(2).transpose(1, 2)
    pooled = F.conv2d(grid, w('attn.sr.weight'), w('attn.sr.bias'), stride=sr)
    pooled = F.gelu(F.layer_norm(pooled.flatten(2).transpose(1, 2), (C,), w('attn.norm.weight'),
                                 w('attn.norm.bias'), eps=1e-5))
    q1 = F.linear(y, w('attn.q1.weight'), w('attn.q1.bias'))
    kv1 = F.linear(pooled, w('attn.kv1.weight'), w('attn.kv1.bias'))
    outs, probs = [], []
    for h in range(half):
        q = q1[..., h * d:(h + 1) * d]
        k, v = kv1[..., h * d:(h + 1) * d], kv1[..., (half + h) * d:(half + h + 1) * d]
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), -1)
        outs.append(a @ v)
        probs.append(a)
    x1 = torch.cat(outs, -1)
    g = torch.stack(probs).mean(0).mean(1).reshape(B, H // sr, W // sr)
    sig_global = g.repeat_interleave(sr, 1).repeat_interleave(sr, 2)
    q2 = F.linear(y, w('attn.q2.weight'), w('attn.q2.bias')).reshape(B, H, W, -1)
    kv2 = F.linear(y, w('attn.kv2.weight'), w('attn.kv2.bias')).reshape(B, H, W, -1)
    x2 = torch.zeros(B, H, W, C // 2)
    sig_local = torch.zeros(B, H, W)
    for r in range(0, H, 7):
        for c in range(0, W, 7):
            acc = torch.zeros(B, 49)
            for h in range(half):
                q = q2[:, r:r + 7, c:c + 7, h * d:(h + 1) * d].reshape(B, 49, d)
                k = kv2[:, r:r + 7, c:c + 7, h * d:(h + 1) * d].reshape(B, 49, d)
                v = kv2[:, r:r + 7, c:c + 7, (half + h) * d:(half + h + 1) * d].reshape(B, 49, d)
                a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), -1)
                x2[:, r:r + 7, c:c + 7, h * d:(h + 1) * d] = (a @ v).reshape(B, 7, 7, d)
                acc += a.mean(1) / half
            sig_local[:, r:r + 7, c:c + 7] = acc.reshape(B, 7, 7)
    z = torch.cat([x1, x2.reshape(B, N, C // 2)], -1) + lepe
    x = x + F.linear(z, w('attn.proj.weight'), w('attn.proj.bias'))
    return _official_mlp(sd, p, x, H, W), sig_local + sig_global


def _official_guided_block(sd, p, x, H, W, num_heads, sr, sig):
    """The official self-guided block, re-stated: both orders sorted, groups merged."""
    w = lambda n: sd[f'{p}.{n}']  # noqa: E731
    B, N, C = x.shape
    d, half = C // num_heads, num_heads // 2
    y = F.layer_norm(x, (C,), w('norm1.weight'), w('norm1.bias'), eps=1e-6)
    lepe = F.conv2d(F.linear(y, w('attn.lepe_linear.weight'), w('attn.lepe_linear.bias'))
                    .transpose(1, 2).reshape(B, C, H, W), w('attn.lepe_conv.weight'),
                    w('attn.lepe_conv.bias'), padding=1, groups=C).flatten(2).transpose(1, 2)
    cuts = {8: [0, N // 4, 3 * (N // 4), N], 4: [0, N // 4, 3 * (N // 4), N], 2: [0, N // 2, N]}
    merges = [(w(f'attn.f{i}.weight')[0], w(f'attn.f{i}.bias')[0])
              for i in range(1, len(cuts[sr]))]

    def reallocate(tokens, significance):
        order = torch.argsort(significance, dim=1)
        out = []
        for b in range(B):
            merged = []
            for (start, end), (mw, mb) in zip(zip(cuts[sr][:-1], cuts[sr][1:]), merges):
                group = tokens[b, order[b, start:end]]                 # (n, C)
                for run in group.split(mw.numel()):
                    merged.append((mw[:, None] * run).sum(0) + mb)
            out.append(torch.stack(merged))
        return torch.stack(out)

    y_col = y.view(B, H, W, C).transpose(1, 2).reshape(B, N, C)
    seq_r = reallocate(y, sig.reshape(B, N))
    seq_c = reallocate(y_col, sig.transpose(1, 2).reshape(B, N))
    kv_r = F.linear(seq_r, w('attn.kv1.weight'), w('attn.kv1.bias'))
    kv_c = F.linear(seq_c, w('attn.kv2.weight'), w('attn.kv2.bias'))
    q = F.linear(y, w('attn.q.weight'), w('attn.q.bias'))
    outs = []
    for h in range(num_heads):
        kv, j = (kv_r, h) if h < half else (kv_c, h - half)
        k, v = kv[..., j * d:(j + 1) * d], kv[..., (half + j) * d:(half + j + 1) * d]
        a = torch.softmax(q[..., h * d:(h + 1) * d] @ k.transpose(1, 2) / math.sqrt(d), -1)
        outs.append(a @ v)
    z = torch.cat(outs, -1) + lepe
    x = x + F.linear(z, w('attn.proj.weight'), w('attn.proj.bias'))
    return _official_mlp(sd, p, x, H, W)


def _official_mlp(sd, p, x, H, W):
    w = lambda n: sd[f'{p}.{n}']  # noqa: E731
    B, N, C = x.shape
    y = F.layer_norm(x, (C,), w('norm2.weight'), w('norm2.bias'), eps=1e-6)
    h = F.linear(y, w('mlp.fc1.weight'), w('mlp.fc1.bias'))
    conv = F.conv2d(h.transpose(1, 2).reshape(B, -1, H, W), w('mlp.dwconv.dwconv.weight'),
                    w('mlp.dwconv.dwconv.bias'), padding=1, groups=h.shape[-1])
    h = F.gelu(h + conv.flatten(2).transpose(1, 2))
    return x + F.linear(h, w('mlp.fc2.weight'), w('mlp.fc2.bias'))


@pytest.mark.parametrize('stage,H', [(0, 56), (2, 14)])
def test_converted_blocks_compute_the_official_blocks(stage, H):
    sd = official_state(TINY, seed=2)
    model = SGFormer(TINY).eval()
    model.load_state_dict(convert_official_sgformer(sd, TINY))
    dim, heads, sr = TINY['dims'][stage], TINY['num_heads'][stage], (8, 4, 2)[stage]
    x = torch.randn(2, H * H, dim)
    blocks = model.stages[stage].blocks
    with torch.no_grad():
        y, sig = blocks[0](x, H, H)
        ref_y, ref_sig = _official_hybrid_block(sd, f'block{stage + 1}.0', x, H, H, heads, sr)
        torch.testing.assert_close(sig, ref_sig, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(y, ref_y, atol=1e-5, rtol=1e-5)
        z, _ = blocks[1](y, H, H, sig)
        ref_z = _official_guided_block(sd, f'block{stage + 1}.1', y, H, H, heads, sr, sig)
    torch.testing.assert_close(z, ref_z, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------- conversion
@pytest.mark.parametrize('arch,params', [('s', 22_545_981), ('m', 38_689_316),
                                         ('b', 77_950_293)])
def test_classifier_param_counts_match_the_official_models(arch, params):
    with torch.device('meta'):
        model = SGFormerClassifier(arch)
    assert count_parameters(model) == params
    assert params == sum(math.prod(s) for s in official_sgformer_shapes(ARCHS[arch]).values())


def test_official_keys_map_one_to_one_and_back():
    state = official_state(ARCHS['s'])
    assert is_official_sgformer(state)
    converted = convert_official_sgformer(state, 's')
    own = SGFormer('s').state_dict()
    assert set(converted) == set(own)
    for k, v in converted.items():
        assert v.shape == own[k].shape, k
        assert v is state[sgformer_official_name(k)]
    assert {sgformer_official_name(k) for k in converted} == set(state) - {'head.weight',
                                                                          'head.bias'}
    clf = convert_official_sgformer(state, 's', with_head=True)
    assert set(clf) == set(SGFormerClassifier('s').state_dict())


def test_wrong_size_or_model_is_an_error_naming_keys_and_shapes():
    small = official_state(ARCHS['s'])
    with pytest.raises(CheckpointMismatchError) as err:
        convert_official_sgformer(small, 'm')
    msg = str(err.value)
    assert 'official SG-Former-M checkpoint' in msg
    assert 'missing keys: block2.4.norm1.weight' in msg
    with pytest.raises(CheckpointMismatchError,
                       match=r'patch_embed1.conv.0.c.weight: \(64, 3, 3, 3\) in the file, '
                             r'\(96, 3, 3, 3\) expected'):
        convert_official_sgformer(small, 'b')
    iformer_like = {'patch_embed.proj1.weight': torch.zeros(48, 3, 3, 3)}
    with pytest.raises(CheckpointMismatchError, match='unexpected keys: patch_embed.proj1'):
        convert_official_sgformer(iformer_like, 's')


def test_pretrained_init_cfg_converts_official_files(tmp_path):
    state = official_state(TINY, seed=4)
    path = tmp_path / 'sgformer_official.pth'
    torch.save({'state_dict': state, 'epoch': 300}, path)
    model = SGFormer(TINY, out_indices=(1, 3), init_cfg=dict(type='Pretrained',
                                                             checkpoint=str(path)))
    model.init_weights()
    torch.testing.assert_close(model.pos_embed, state['pos_embed'])
    torch.testing.assert_close(model.stages[2].blocks[1].attn.merge[1].weight,
                               state['block3.1.attn.f2.weight'])
    wrong = SGFormer('s', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match='official SG-Former-S checkpoint'):
        wrong.init_weights()

"""densebox's CPU inference fast paths: 3x3 convs on ATen's or NNPACK's kernel
(densebox.ops.conv) and 2x2 max-pools as strided maxima (densebox.ops.pool).

Oracles: ``F.conv2d`` and ``F.max_pool2d`` (ATen). NNPACK's Winograd results differ by
rounding only (the tolerance is relative to the output's scale); the pools are exact.
"""
import copy
import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densebox.ops import conv as conv_mod
from densebox.ops import speed_up_cpu_inference
from densebox.ops.pool import StridedMaxPool2d, is_strided_pool, max_pool_2x2
from densebox.ops.conv import (ENV_CPU_CONV, ENV_CPU_CONV_CACHE, AutotunedConv2d,
                               autotune_cpu_convs, cpu_conv_mode, is_eligible,
                               nnpack_available, size_class)

needs_nnpack = pytest.mark.skipif(not nnpack_available(), reason='this torch build has no NNPACK')


def _close_to_aten(out, ref):
    """Winograd rounding: within 1e-5 of the output's largest magnitude."""
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def _record_calls(monkeypatch, owner, name):
    """Wrap ``owner.name``; each call appends the shape of its first tensor argument."""
    calls = []
    real = getattr(owner, name)

    def recording(*args):
        calls.append(next(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
        return real(*args)
    monkeypatch.setattr(owner, name, recording)
    return calls


def _count_nnpack_calls(monkeypatch):
    return _record_calls(monkeypatch, conv_mod, '_nnpack_conv')


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),           # stride 2: not eligible
        nn.Conv2d(32, 32, 3, padding=2, dilation=2),         # dilated: not eligible
        nn.Conv2d(32, 32, 1),                                # 1x1: not eligible
        nn.Conv2d(32, 32, 3, padding=1, groups=4),           # grouped: not eligible
        nn.Conv2d(32, 8, 3, padding=0),
    ).eval()


def test_eligibility():
    net = _net()
    assert [is_eligible(m) for m in net if isinstance(m, nn.Conv2d)] == \
        [True, True, False, False, False, False, True]
    assert not is_eligible(nn.Conv2d(4, 4, 3, padding='same'))
    assert not is_eligible(nn.Conv2d(4, 4, 3, padding=1, padding_mode='reflect'))
    assert not is_eligible(nn.Linear(3, 3))


@needs_nnpack
def test_autotune_changes_class_only():
    net = _net()
    params = {name: p for name, p in net.named_parameters()}
    state = copy.deepcopy(net.state_dict())
    assert autotune_cpu_convs(net) == 3
    assert [type(m).__name__ for m in net if isinstance(m, nn.Conv2d)] == \
        ['AutotunedConv2d'] * 2 + ['Conv2d'] * 4 + ['AutotunedConv2d']
    assert all(isinstance(m, nn.Conv2d) for m in (net[0], net[2], net[8]))
    assert {name: p for name, p in net.named_parameters()} == params  # the same objects
    assert net.state_dict().keys() == state.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert autotune_cpu_convs(net) == 0  # idempotent


def test_no_nnpack_changes_nothing(monkeypatch):
    monkeypatch.setattr(conv_mod, 'nnpack_available', lambda: False)
    net = _net()
    assert autotune_cpu_convs(net) == 0
    assert all(type(m) in (nn.Conv2d, nn.ReLU) for m in net)


@needs_nnpack
@pytest.mark.parametrize('shape', [(1, 3, 37, 50), (2, 3, 64, 64), (1, 3, 5, 7)])
def test_forced_nnpack_matches_aten(shape, monkeypatch):
    net = _net()
    x = torch.randn(shape)
    with torch.inference_mode():
        ref = net(x)
        autotune_cpu_convs(net)
        monkeypatch.setenv(ENV_CPU_CONV, 'nnpack')
        calls = _count_nnpack_calls(monkeypatch)
        out = net(x)
    assert len(calls) == 3  # the three eligible convs, nothing else
    _close_to_aten(out, ref)


@needs_nnpack
def test_single_conv_against_functional(monkeypatch):
    """Bias / no bias, asymmetric padding, non-square maps on NNPACK; a non-contiguous input
    is not taken there (the fast path needs a contiguous map) and runs ATen's kernel."""
    monkeypatch.setenv(ENV_CPU_CONV, 'nnpack')
    torch.manual_seed(1)
    calls = _count_nnpack_calls(monkeypatch)
    for bias, padding in [(True, (1, 1)), (False, (0, 1)), (True, (2, 0))]:
        conv = nn.Conv2d(24, 40, 3, padding=padding, bias=bias).eval()
        x = torch.randn(1, 24, 33, 45)
        with torch.inference_mode():
            ref = F.conv2d(x, conv.weight, conv.bias, padding=padding)
            autotune_cpu_convs(conv)
            calls.clear()
            _close_to_aten(conv(x), ref)
            assert calls == [tuple(x.shape)]  # this one ran on NNPACK
            view = torch.randn(1, 33, 45, 24).permute(0, 3, 1, 2)  # (1, 24, 33, 45) NHWC
            assert view.shape == x.shape and not view.is_contiguous()
            assert torch.equal(conv(view), F.conv2d(view, conv.weight, conv.bias,
                                                    padding=padding))
            assert calls == [tuple(x.shape)]  # and this one did not


@needs_nnpack
def test_auto_times_each_size_class_once(monkeypatch):
    monkeypatch.delenv(ENV_CPU_CONV, raising=False)
    monkeypatch.setenv(ENV_CPU_CONV_CACHE, 'off')
    net = _net()
    autotune_cpu_convs(net)
    timings = _record_calls(monkeypatch, AutotunedConv2d, '_time_kernels')
    a, b = torch.randn(1, 3, 40, 40), torch.randn(1, 3, 24, 32)
    a2 = torch.randn(1, 3, 38, 41)  # the same size class as a (area 1558 vs 1600)
    with torch.inference_mode():
        ref = [F.conv2d(a, net[0].weight, net[0].bias, padding=1)]
        first = net[0](a)
        net(a), net(a), net(b), net(a2)
    assert len(timings) == 3 + 3  # each eligible conv timed once per size class
    threads = torch.get_num_threads()
    assert set(net[0].kernel_choice) == {(1, 11, threads), (1, 10, threads)}  # 1600, 768 px
    assert set(net[0].kernel_choice.values()) <= {'aten', 'nnpack'}
    _close_to_aten(first, ref[0])


@needs_nnpack
def test_choices_file_is_written_and_reused(monkeypatch, tmp_path):
    """A second model (as in a new process) reads the choices instead of timing again."""
    path = tmp_path / 'cache' / 'choices.json'
    monkeypatch.delenv(ENV_CPU_CONV, raising=False)
    monkeypatch.setenv(ENV_CPU_CONV_CACHE, str(path))
    timings = _record_calls(monkeypatch, AutotunedConv2d, '_time_kernels')
    x = torch.randn(1, 3, 30, 30)
    first, second = _net(), _net()
    autotune_cpu_convs(first), autotune_cpu_convs(second)
    with torch.inference_mode():
        first(x)
        assert len(timings) == 3
        saved = json.loads(path.read_text())
        assert len(saved) == 3 and set(saved.values()) <= {'aten', 'nnpack'}
        assert all(f'{torch.get_num_threads()} threads' in k for k in saved)
        assert sum('area 2^10' in k for k in saved) == 2  # 30x30 maps; the last conv's: 15x15
        conv_mod._choice_files.clear()  # forget what this process read: as a new process
        _close_to_aten(second(x), first(x))
    assert len(timings) == 3  # nothing timed for the second model
    tuned = [0, 2, 8]
    assert [second[i].kernel_choice for i in tuned] == [first[i].kernel_choice for i in tuned]


@needs_nnpack
@pytest.mark.parametrize('content', ['not json', '[1, 2]', '{"k": "winograd"}'])
def test_bad_choices_file_is_ignored_and_rewritten(monkeypatch, tmp_path, content):
    path = tmp_path / 'choices.json'
    path.write_text(content)
    monkeypatch.delenv(ENV_CPU_CONV, raising=False)
    monkeypatch.setenv(ENV_CPU_CONV_CACHE, str(path))
    conv = nn.Conv2d(4, 4, 3, padding=1).eval()
    autotune_cpu_convs(conv)
    x = torch.randn(1, 4, 16, 16)
    with torch.inference_mode(), pytest.warns(UserWarning, match=str(path)):
        _close_to_aten(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    saved = json.loads(path.read_text())
    assert list(saved.values()) in (['aten'], ['nnpack']) and 'conv 4->4 pad 1x1' in next(iter(saved))


def test_unwritable_choices_file_warns_and_keeps_the_choice(monkeypatch, tmp_path):
    store = conv_mod.ChoiceFile(tmp_path / 'choices.json')

    def refuse(src, dst):
        raise PermissionError(13, 'Permission denied', str(dst))
    monkeypatch.setattr(conv_mod.os, 'replace', refuse)
    with pytest.warns(UserWarning, match='cannot write CPU conv choices'):
        store.put('some conv', 'nnpack')
    assert store.get('some conv') == 'nnpack'
    assert list(tmp_path.iterdir()) == []  # no half-written temporary file left behind


def test_choices_file_off_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_CPU_CONV_CACHE, 'off')
    assert conv_mod.choice_file() is None
    monkeypatch.setenv(ENV_CPU_CONV_CACHE, str(tmp_path / 'c.json'))
    assert conv_mod.choice_file().path == tmp_path / 'c.json'


@needs_nnpack
def test_forced_choice_is_used(monkeypatch):
    """A recorded 'nnpack' choice runs NNPACK, a recorded 'aten' choice does not."""
    monkeypatch.delenv(ENV_CPU_CONV, raising=False)
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    autotune_cpu_convs(conv)
    x = torch.randn(1, 8, 20, 20)
    key = size_class(x)
    calls = _count_nnpack_calls(monkeypatch)
    with torch.inference_mode():
        conv.kernel_choice[key] = 'aten'
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
        assert calls == []
        conv.kernel_choice[key] = 'nnpack'
        _close_to_aten(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
        assert calls == [tuple(x.shape)]


@needs_nnpack
def test_standard_path_outside_cpu_float32_inference(monkeypatch):
    """Training (autograd on), bfloat16 autocast, float64, channels-last input and ATen mode
    all run nn.Conv2d's own kernel: results are bitwise those of F.conv2d, NNPACK is never
    called."""
    monkeypatch.setenv(ENV_CPU_CONV, 'nnpack')
    torch.manual_seed(2)
    conv = nn.Conv2d(6, 10, 3, padding=1)
    plain = copy.deepcopy(conv)
    autotune_cpu_convs(conv)
    calls = _count_nnpack_calls(monkeypatch)
    x = torch.randn(2, 6, 12, 12, requires_grad=True)
    conv(x).square().sum().backward()
    grad_ours, x.grad = x.grad.clone(), None
    plain(x).square().sum().backward()
    assert torch.equal(grad_ours, x.grad) and torch.equal(conv.weight.grad, plain.weight.grad)
    with torch.no_grad():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert torch.equal(conv(x), plain(x))
        x64 = x.double()
        assert torch.equal(conv.double()(x64), plain.double()(x64))
        conv.float(), plain.float()
        cl = x.contiguous(memory_format=torch.channels_last)
        assert torch.equal(conv(cl), plain(cl))
        monkeypatch.setenv(ENV_CPU_CONV, 'aten')
        assert torch.equal(conv(x), plain(x))
    assert calls == []


@needs_nnpack
def test_tracing_sees_the_standard_conv(monkeypatch):
    """ONNX export traces the model: the graph must hold aten's convolution, not NNPACK."""
    monkeypatch.setenv(ENV_CPU_CONV, 'nnpack')
    conv = nn.Conv2d(4, 4, 3, padding=1).eval()
    autotune_cpu_convs(conv)
    calls = _count_nnpack_calls(monkeypatch)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit.trace is deprecated
        # check_trace=False: the check would also run the module untraced (on NNPACK)
        traced = torch.jit.trace(conv, torch.randn(1, 4, 8, 8), check_trace=False)
    assert calls == []
    graph = str(traced.inlined_graph)
    assert 'aten::_convolution' in graph and 'nnpack' not in graph


def test_mode_from_environment(monkeypatch):
    monkeypatch.delenv(ENV_CPU_CONV, raising=False)
    assert cpu_conv_mode() == 'auto'
    monkeypatch.setenv(ENV_CPU_CONV, ' NNPACK ')
    assert cpu_conv_mode() == 'nnpack'
    monkeypatch.setenv(ENV_CPU_CONV, 'winograd')
    with pytest.raises(ValueError, match='DENSEBOX_CPU_CONV=.winograd.'):
        cpu_conv_mode()


# ---------------------------------------------------------------------------- max-pools
@pytest.mark.parametrize('ceil_mode', [False, True])
@pytest.mark.parametrize('hw', [(2, 2), (7, 9), (38, 38), (75, 75), (2, 5), (300, 301)])
def test_strided_max_pool_equals_aten(hw, ceil_mode):
    torch.manual_seed(3)
    x = torch.randn(2, 5, *hw)
    x[0, 0, 0, 0] = float('nan')  # NaN propagates in both
    x[1, 1] = float('-inf')
    ref = F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode)
    out = max_pool_2x2(x, ceil_mode)
    assert out.shape == ref.shape
    assert torch.equal(out.nan_to_num(nan=7.0), ref.nan_to_num(nan=7.0))
    assert torch.isnan(out).sum() == torch.isnan(ref).sum() == 1


def test_strided_max_pool_dtypes_layouts_and_small_inputs():
    torch.manual_seed(4)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = (torch.randn(1, 3, 11, 10) * 50).to(dtype)
        assert torch.equal(max_pool_2x2(x, True), F.max_pool2d(x, 2, 2, ceil_mode=True))
    x = torch.randn(1, 8, 12, 14).contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool_2x2(x, False), F.max_pool2d(x, 2, 2))
    pool = nn.MaxPool2d(2, 2)
    speed_up_cpu_inference(pool)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match='too small'):  # ATen's own error
            pool(torch.randn(1, 2, 1, 5))
        ceil_pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        speed_up_cpu_inference(ceil_pool)
        x = torch.randn(1, 2, 1, 5)
        assert torch.equal(ceil_pool(x), F.max_pool2d(x, 2, 2, ceil_mode=True))


def test_speed_up_pools_in_a_model(monkeypatch):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2, 2),
                        nn.MaxPool2d(2, 2, ceil_mode=True), nn.MaxPool2d(3, 1, padding=1),
                        nn.MaxPool2d(2, 2, return_indices=False, padding=1)).eval()
    assert [is_strided_pool(m) for m in net] == [False, True, True, False, False]
    x = torch.randn(1, 3, 45, 61)
    with torch.inference_mode():
        ref = net(x)
    monkeypatch.setattr(conv_mod, 'nnpack_available', lambda: False)  # pools only
    assert speed_up_cpu_inference(net) == dict(convs=0, max_pools=2)
    assert [type(m) for m in net][1:3] == [StridedMaxPool2d] * 2
    calls = []
    real = max_pool_2x2
    monkeypatch.setattr('densebox.ops.pool.max_pool_2x2',
                        lambda t, c: calls.append(c) or real(t, c))
    with torch.inference_mode():
        assert torch.equal(net(x), ref)
    assert calls == [False, True]
    y = x.clone().requires_grad_()  # training: nn.MaxPool2d's own kernel and gradient
    net(y).sum().backward()
    assert len(calls) == 2 and y.grad is not None

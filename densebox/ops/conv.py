"""CPU inference convolutions: NNPACK's Winograd 3x3 kernel where it is faster than ATen's.

PyTorch ships NNPACK, whose 3x3 stride-1 convolution uses Winograd transforms (about half
the multiplications of a direct or im2col convolution), but ATen sends every CPU convolution
to oneDNN when the build has it (seen with torch 2.14 at batches 1 to 32), so NNPACK is never
used. At the small batches of CPU inference NNPACK is often the faster kernel for the large
early maps of a VGG or ResNet (on a 2-core AVX2 machine: 43 ms against 85 ms for conv1_2 of
SSD300), and slower for small maps: which one wins depends on the CPU, the thread count and
the shape.

:func:`autotune_cpu_convs` therefore turns every eligible ``nn.Conv2d`` of a model (3x3,
stride 1, no dilation, one group, zero padding) into an :class:`AutotunedConv2d`, a subclass
with the same parameters (state dicts, ``isinstance`` checks and training are unchanged). The
first time such a conv sees an input size in inference it times both kernels on that
input and remembers the faster one, as ``cudnn.benchmark`` does on a GPU. Sizes are
remembered by batch and by map area rounded to a power of two (:func:`size_class`), so
images of many slightly different sizes (keep-ratio resizing) do not each pay for a
timing. The first call with a new size class is slower; later calls run the chosen kernel.
Choices are also kept on disk (:class:`ChoiceFile`, keyed by CPU, torch version, threads,
conv and size class), so a later process on the same machine does not time them again.

Only float32 CPU tensors with autograd off (``torch.no_grad`` / ``torch.inference_mode``)
and no autocast take this path; anything else (training, CUDA, bfloat16 autocast, channels-
last input, ONNX export and other tracing, torch.compile) is a plain ``nn.Conv2d`` call.
NNPACK's results differ from ATen's by rounding only (Winograd's transforms: about 1e-6 of
the output's scale for VGG-sized layers).

``DENSEBOX_CPU_CONV`` overrides the choice: ``auto`` (default: time both), ``aten`` (never
NNPACK) or ``nnpack`` (always NNPACK where eligible; for tests and benchmarks).
``DENSEBOX_CPU_CONV_CACHE`` is the choices file (default
``~/.cache/densebox/cpu_conv_choices.json``); ``off`` keeps choices in memory only.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ._ext import densebox_cache_dir
from .pool import eager_cpu_inference

ENV_CPU_CONV = 'DENSEBOX_CPU_CONV'
ENV_CPU_CONV_CACHE = 'DENSEBOX_CPU_CONV_CACHE'
CPU_CONV_MODES = ('auto', 'aten', 'nnpack')
# NNPACK must beat ATen by this factor to be chosen: a tie is not worth the other rounding.
NNPACK_MIN_GAIN = 0.95
TIMING_RUNS = 3
TRAIN_LAYOUTS = ('contiguous', 'channels_last')
CHOICE_VALUES = ('aten', 'nnpack') + TRAIN_LAYOUTS  # what the choices file may hold


@functools.lru_cache(maxsize=None)
def nnpack_available() -> bool:
    """Whether this torch build has a working NNPACK (it needs x86-64 with AVX2 or ARM NEON)."""
    probe = getattr(torch, '_nnpack_available', None)
    return bool(probe and probe() and hasattr(torch, '_nnpack_spatial_convolution'))


def cpu_conv_mode() -> str:
    """``DENSEBOX_CPU_CONV`` (``auto`` when unset); an unknown value raises a ValueError."""
    mode = os.environ.get(ENV_CPU_CONV, 'auto').strip().lower() or 'auto'
    if mode not in CPU_CONV_MODES:
        raise ValueError(f'{ENV_CPU_CONV}={mode!r} is not one of {", ".join(CPU_CONV_MODES)}')
    return mode


def size_class(x: Tensor) -> Tuple[int, int, int]:
    """What the kernel choice for a (B, C, H, W) input depends on: (B, bit length of H * W,
    torch threads); e.g. 375x500 and 400x600 maps share a class, 300x300 and 600x600 do not.
    """
    batch, _, height, width = x.shape
    return batch, (height * width).bit_length(), torch.get_num_threads()


@functools.lru_cache(maxsize=None)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


class ChoiceFile:
    """Kernel choices kept in a JSON file: ``{key: 'aten' | 'nnpack'}`` (inference) and
    ``{key: 'contiguous' | 'channels_last'}`` (training layouts).

    Read once, then updated on each new choice by re-reading the file, adding the choice
    and replacing the file atomically (so processes sharing it lose nothing but a race's
    duplicate timing). A file that is not such a JSON object is ignored with a warning
    naming it, and rewritten. Only plain strings are read: nothing in the file is executed.
    """

    def __init__(self, path: Path):
        self.path = path
        self._choices: Optional[Dict[str, str]] = None
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            if self._choices is None:
                self._choices = self._read()
            return self._choices.get(key)

    def put(self, key: str, choice: str) -> None:
        with self._lock:
            choices = self._read()
            choices[key] = choice
            self._choices = choices
            tmp = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + '.')
                with os.fdopen(fd, 'w') as f:
                    json.dump(choices, f, indent=0, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError as err:  # e.g. a read-only cache folder: keep the choice in memory
                warnings.warn(f'densebox: cannot write CPU conv choices to {self.path}: {err}')
                if tmp is not None and os.path.exists(tmp):
                    os.unlink(tmp)

    def _read(self) -> Dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            warnings.warn(f'densebox: ignoring unreadable CPU conv choices file {self.path} '
                          f'({err}); it will be rewritten')
            return {}
        if not isinstance(data, dict) or not all(
                isinstance(v, str) and v in CHOICE_VALUES for v in data.values()):
            warnings.warn(f'densebox: ignoring CPU conv choices file {self.path}: not a JSON '
                          f'object of {" / ".join(CHOICE_VALUES)} values; it will be rewritten')
            return {}
        return {str(k): v for k, v in data.items()}


_choice_files: Dict[Path, ChoiceFile] = {}
_choice_files_lock = threading.Lock()
_TIMING_LOCK = threading.Lock()  # see AutotunedConv2d.forward
_announced_layout_timing = False


def choice_file() -> Optional[ChoiceFile]:
    """The :class:`ChoiceFile` named by ``DENSEBOX_CPU_CONV_CACHE`` (None when ``off``)."""
    value = os.environ.get(ENV_CPU_CONV_CACHE)
    if value is not None and value.strip().lower() in ('', 'off', '0', 'none'):
        return None
    path = Path(value).expanduser() if value else densebox_cache_dir() / 'cpu_conv_choices.json'
    with _choice_files_lock:  # one ChoiceFile (and lock) per path, also across threads
        if path not in _choice_files:
            _choice_files[path] = ChoiceFile(path)
        return _choice_files[path]


def _nnpack_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    return torch._nnpack_spatial_convolution(x, conv.weight, conv.bias, list(conv.padding),
                                             [1, 1])


def _best_time(fn, x: Tensor, runs: int = TIMING_RUNS) -> float:
    best = float('inf')
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


class AutotunedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, stride 1) that runs CPU float32 inference on the faster of
    ATen's and NNPACK's kernels, chosen per input size class by timing both once.

    Shapes: input (B, C_in, H, W) -> output (B, C_out, H', W'), as ``nn.Conv2d``.
    :func:`autotune_cpu_convs` turns existing convs into this class in place; it adds no
    parameter or buffer, only ``kernel_choice`` (:func:`size_class` of the input -> kernel)
    and ``tuning_group`` (the model's :class:`TuningGroup`, which announces the timing).
    """

    kernel_choice: Dict[Tuple, str]
    # CPU training: memory layout of the input per size class; None = layout left alone
    # (set to {} by speed_up_cpu_training)
    train_layouts: Optional[Dict[Tuple, str]] = None

    def forward(self, x: Tensor) -> Tensor:
        if self.train_layouts is not None and self._in_cpu_training(x):
            return super().forward(self._training_input(x))
        if not self._takes_fast_path(x):
            return super().forward(x)
        mode = cpu_conv_mode()
        if mode == 'aten':
            return super().forward(x)
        if mode == 'nnpack':
            return _nnpack_conv(x, self)
        key = size_class(x)
        choice = self.kernel_choice.get(key)
        if choice is None:
            # One thread times, the others wait for its choice: threads sharing a model then
            # all run the kernel that is kept (the same numbers as one thread would get), and
            # the timing is not disturbed by other threads timing.
            with _TIMING_LOCK:
                choice = self.kernel_choice.get(key)
                if choice is None:
                    choice = self.kernel_choice[key] = self._remembered_or_timed(x, key)
        return _nnpack_conv(x, self) if choice == 'nnpack' else super().forward(x)

    def _remembered_or_timed(self, x: Tensor, key: Tuple[int, int, int]) -> str:
        """The choices file's kernel for this conv and size class, else a timed choice
        (then written to the file)."""
        store = choice_file()
        batch, area_bits, threads = key
        file_key = (f'{cpu_name()} | torch {torch.__version__} | {threads} threads | '
                    f'conv {self.in_channels}->{self.out_channels} pad {self.padding[0]}x'
                    f'{self.padding[1]} bias {self.bias is not None} | batch {batch} '
                    f'area 2^{area_bits}')
        choice = store.get(file_key) if store is not None else None
        if choice is None:
            start = time.perf_counter()
            choice = self._time_kernels(x)
            group = getattr(self, 'tuning_group', None)
            if group is not None:
                group.timed(self, tuple(x.shape), time.perf_counter() - start, store)
            if store is not None:
                store.put(file_key, choice)
        return choice

    def _takes_fast_path(self, x: Tensor) -> bool:
        return (eager_cpu_inference(x) and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and x.is_contiguous()
                and not torch.is_autocast_enabled('cpu') and nnpack_available())

    def _time_kernels(self, x: Tensor) -> str:
        """'nnpack' or 'aten': whichever ran ``x`` faster (best of three runs each)."""
        aten = super().forward
        try:
            _nnpack_conv(x, self)  # the first call allocates NNPACK's workspace
            nnpack_s = _best_time(lambda t: _nnpack_conv(t, self), x)
        except RuntimeError:  # e.g. a shape NNPACK refuses
            return 'aten'
        aten(x)
        aten_s = _best_time(aten, x)
        return 'nnpack' if nnpack_s < NNPACK_MIN_GAIN * aten_s else 'aten'


    # ------------------------------------------------------------ CPU training layouts
    def _in_cpu_training(self, x: Tensor) -> bool:
        return (torch.is_grad_enabled() and self.weight.requires_grad and x.device.type == 'cpu'
                and x.dim() == 4 and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and not torch.is_autocast_enabled('cpu')
                and not (torch.jit.is_tracing() or torch.jit.is_scripting()
                         or torch.compiler.is_compiling())
                # deterministic runs (resume must repeat the rounding): layouts left alone
                and not torch.are_deterministic_algorithms_enabled()
                and cpu_conv_mode() != 'aten')

    def _training_input(self, x: Tensor) -> Tensor:
        """``x`` in the memory layout whose forward + backward (with the conversion to it)
        was faster for its size and incoming layout."""
        key = ('train', x.requires_grad, _layout_of(x)) + size_class(x)
        layout = self.train_layouts.get(key)
        if layout is None:
            layout = self.train_layouts[key] = self._remembered_or_timed_layout(x, key)
        fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
        return x if x.is_contiguous(memory_format=fmt) else x.contiguous(memory_format=fmt)

    def _remembered_or_timed_layout(self, x: Tensor, key: Tuple) -> str:
        store = choice_file()
        _, grad_input, incoming, batch, area_bits, threads = key
        file_key = (f'{cpu_name()} | torch {torch.__version__} | {threads} threads | training '
                    f'conv {self.in_channels}->{self.out_channels} pad {self.padding[0]}x'
                    f'{self.padding[1]} bias {self.bias is not None} grad_input {grad_input} | '
                    f'batch {batch} area 2^{area_bits} from {incoming}')
        layout = store.get(file_key) if store is not None else None
        if layout not in TRAIN_LAYOUTS:
            global _announced_layout_timing
            if not _announced_layout_timing:
                _announced_layout_timing = True
                print('densebox: timing the memory layout of each CPU training conv once per '
                      'input size (a few forward + backward passes each; remembered in '
                      f'{store.path if store is not None else "memory"})', file=sys.stderr)
            layout = self._time_training_layouts(x)
            if store is not None:
                store.put(file_key, layout)
        return layout

    def _time_training_layouts(self, x: Tensor) -> str:
        """'channels_last' or 'contiguous': the input layout in which this conv's forward
        and backward (input, weight and bias gradients, as training needs them), plus the
        conversion from ``x``'s own layout, ran faster on (the first four images of) ``x``
        (best of two runs each, after one warm-up). The other layout must win by 5% to
        be taken, so neighbouring convs do not flip layouts on timing noise. oneDNN
        computes the same convolution in both; only its blocking, and so the rounding,
        differs."""
        weight = self.weight.detach()
        bias = self.bias.detach() if self.bias is not None else None
        mask = [bool(x.requires_grad), True, bias is not None]
        with torch.no_grad():
            inp = x.detach()[:4]  # the choice hardly depends on the batch beyond a few images
            grad = torch.randn_like(self._conv_forward(inp, weight, bias))

            def step(a: Tensor, g: Tensor) -> None:
                self._conv_forward(a, weight, bias)
                torch.ops.aten.convolution_backward(
                    g, a, weight, [weight.shape[0]] if bias is not None else None,
                    list(self.stride), list(self.padding), list(self.dilation), False, [0, 0],
                    self.groups, mask)
            incoming = _layout_of(x)
            inp = inp.contiguous(memory_format=_FORMATS[incoming])  # the slice keeps it
            best = {}
            for layout, fmt in _FORMATS.items():
                g = grad.contiguous(memory_format=fmt)
                step(inp.contiguous(memory_format=fmt), g)
                best[layout] = _best_time(
                    lambda t: step(t.contiguous(memory_format=fmt), g), inp, runs=2)
        other = 'channels_last' if incoming == 'contiguous' else 'contiguous'
        return other if best[other] < NNPACK_MIN_GAIN * best[incoming] else incoming


_FORMATS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}


def _layout_of(x: Tensor) -> str:
    """'channels_last' for a channels-last (and not also NCHW-contiguous) tensor, else
    'contiguous' (what a strided view is copied to)."""
    return ('channels_last' if x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous() else 'contiguous')


class TuningGroup:
    """The autotuned convs of one model. When the model's first conv times its kernels (a
    new input size) it says so in one line on stderr with an upper estimate of how long the
    whole model's timing takes (its own time for each conv: later maps are smaller), so a
    slow first call is never a silent one."""

    def __init__(self, first: nn.Module, size: int):
        self.first = first
        self.size = size

    def timed(self, conv: nn.Module, shape: Tuple[int, ...], seconds: float, store) -> None:
        """Called by each conv after timing its kernels on an input of ``shape``
        (B, C, H, W); only the model's first conv speaks."""
        if conv is not self.first:
            return
        import sys
        where = f'remembered in {store.path}' if store is not None else 'not remembered'
        print(f'densebox: timing ATen and NNPACK kernels of {self.size} CPU convs for input '
              f"{'x'.join(map(str, shape))} with {torch.get_num_threads()} thread(s) (once "
              f'per input size; at most about {max(1.0, seconds * self.size):.0f} s; {where}; '
              'DENSEBOX_CPU_CONV=aten skips it)', file=sys.stderr, flush=True)


def is_eligible(conv: nn.Module) -> bool:
    """Whether ``conv`` is a conv NNPACK can run: an ``nn.Conv2d`` with a 3x3 kernel,
    stride 1, dilation 1, one group and integer zero padding."""
    return (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (3, 3)
            and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1 and conv.padding_mode == 'zeros'
            and isinstance(conv.padding, tuple) and all(isinstance(p, int) for p in conv.padding))


def autotune_cpu_convs(model: nn.Module) -> int:
    """Make every eligible plain ``nn.Conv2d`` in ``model`` an :class:`AutotunedConv2d`.

    In place: each conv object only changes class (its parameters, hooks and place in the
    model stay, so the state dict is exactly as it was). Returns how many convs changed (0
    where this torch has no NNPACK; then nothing changes).
    """
    if not nnpack_available():
        return 0
    return _swap_eligible_convs(model)


def _swap_eligible_convs(model: nn.Module) -> int:
    """Makes every eligible plain conv of ``model`` an :class:`AutotunedConv2d` sharing one
    :class:`TuningGroup`; returns how many."""
    convs = [m for m in model.modules() if type(m) is nn.Conv2d and is_eligible(m)]
    if not convs:
        return 0
    group = TuningGroup(convs[0], len(convs))
    for module in convs:
        module.__class__ = AutotunedConv2d
        module.kernel_choice = {}
        module.tuning_group = group
    return len(convs)


def speed_up_cpu_training(model: nn.Module) -> int:
    """In place: every eligible conv (see :func:`autotune_cpu_convs`) chooses, in CPU float32
    training, the input memory layout (contiguous NCHW or channels-last) in which its
    forward + backward runs faster, per input size class, timed once on the first step and
    kept in the choices file. The convolution is the same (oneDNN in both layouts; the
    rounding differs); parameters, state dict and inference are untouched.
    ``DENSEBOX_CPU_CONV=aten`` and deterministic mode
    (``torch.use_deterministic_algorithms``, mmengine's ``randomness.deterministic``) leave
    every layout alone. Returns the number of convs.

    Why: oneDNN's channels-last kernels ran SSD300's conv forward + backward faster on the
    large early maps and slower on the small late ones (2-core AVX-512 machine, batch 4),
    so no single layout is best for the whole network, and which one wins depends on the
    CPU.
    """
    _swap_eligible_convs(model)  # with or without NNPACK (inference checks for it itself)
    count = 0
    for module in model.modules():
        if isinstance(module, AutotunedConv2d):
            if module.train_layouts is None:
                module.train_layouts = {}
            count += 1
    return count


__all__ = ['AutotunedConv2d', 'ChoiceFile', 'TuningGroup', 'autotune_cpu_convs', 'choice_file',
           'cpu_conv_mode', 'cpu_name', 'is_eligible', 'nnpack_available', 'size_class',
           'speed_up_cpu_training', 'ENV_CPU_CONV', 'ENV_CPU_CONV_CACHE']

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
    """Kernel choices kept in a JSON file: ``{key: 'aten' | 'nnpack'}``.

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
                isinstance(v, str) and v in ('aten', 'nnpack') for v in data.values()):
            warnings.warn(f'densebox: ignoring CPU conv choices file {self.path}: not a JSON '
                          "object of 'aten' / 'nnpack' values; it will be rewritten")
            return {}
        return {str(k): v for k, v in data.items()}


_choice_files: Dict[Path, ChoiceFile] = {}
_choice_files_lock = threading.Lock()
_TIMING_LOCK = threading.Lock()  # see AutotunedConv2d.forward


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


def _best_time(fn, x: Tensor) -> float:
    best = float('inf')
    for _ in range(TIMING_RUNS):
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

    def forward(self, x: Tensor) -> Tensor:
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
    convs = [m for m in model.modules() if type(m) is nn.Conv2d and is_eligible(m)]
    if not convs:
        return 0
    group = TuningGroup(convs[0], len(convs))
    for module in convs:
        module.__class__ = AutotunedConv2d
        module.kernel_choice = {}
        module.tuning_group = group
    return len(convs)


__all__ = ['AutotunedConv2d', 'ChoiceFile', 'TuningGroup', 'autotune_cpu_convs', 'choice_file',
           'cpu_conv_mode', 'cpu_name', 'is_eligible', 'nnpack_available', 'size_class',
           'ENV_CPU_CONV', 'ENV_CPU_CONV_CACHE']

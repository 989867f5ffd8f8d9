"""Build, cache and choose the backend of ``densebox.ops``.

The C++ (CPU) and CUDA kernels in ``csrc/`` are compiled on first use with
``torch.utils.cpp_extension.load`` and cached in
``$DENSEBOX_OPS_CACHE`` (default ``~/.cache/densebox/ops``), one folder per torch version,
CUDA version, Python version, build kind and hash of the sources' content and flags. The
folder holds its own copy of the sources and a lock, so processes and checkouts with the
same sources share one build: one compiles (saying so on stderr, with how long it took last
time), the others wait for it, and later ones only import the built library. The CUDA kernels are built only when
``torch.cuda.is_available()`` and an nvcc is found; the CPU build needs no CUDA at all.

``DENSEBOX_OPS`` chooses the backend:

* unset / ``auto``: the extension, or torchvision.ops with ONE warning when it cannot be
  built (the warning names the build log);
* ``ext``: the extension, and a failed build raises :class:`ExtensionBuildError`;
* ``torchvision``: torchvision.ops, nothing is built.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CSRC = Path(__file__).resolve().parent / 'csrc'
CPU_SOURCES = ('bindings.cpp', 'nms_cpu.cpp', 'roi_align_cpu.cpp')
CUDA_SOURCES = ('nms_cuda.cu', 'roi_align_cuda.cu')
HEADERS = ('ops.h', 'roi_align_common.h')
# -ffp-contract=off: no fused multiply-adds, so float results match torchvision's CPU kernels
CFLAGS = ('-O3', '-std=c++20', '-ffp-contract=off')
CUDA_CFLAGS = ('-O3', '-std=c++20')
DEFAULT_CUDA_ARCH = '9.0'  # used only when building CUDA kernels with no GPU visible
ENV_BACKEND = 'DENSEBOX_OPS'
ENV_CACHE = 'DENSEBOX_OPS_CACHE'
BACKENDS = ('ext', 'torchvision')
Ops = Any  # the torch.ops.<name> namespace of a built extension


class ExtensionBuildError(RuntimeError):
    """The densebox.ops extension could not be built or imported.

    Attributes:
        log_path (Path | None): file holding the compiler output, when a build ran.
    """

    def __init__(self, message: str, log_path: Path | None = None):
        super().__init__(message if log_path is None else f'{message} (build log: {log_path})')
        self.log_path = log_path


# ----------------------------------------------------------------------------- building

def densebox_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/densebox`` (default ``~/.cache/densebox``)."""
    xdg = os.environ.get('XDG_CACHE_HOME')
    base = Path(xdg).expanduser() if xdg else Path.home() / '.cache'
    return base / 'densebox'


def cache_root() -> Path:
    """Folder holding one build folder per configuration."""
    root = os.environ.get(ENV_CACHE)
    if root:
        return Path(root).expanduser()
    return densebox_cache_dir() / 'ops'


def _toolkit_ok(home: Path) -> bool:
    libs = [home / 'lib64' / 'libcudart.so', home / 'lib' / 'libcudart.so',
            *home.glob('targets/*/lib/libcudart.so')]
    return (home / 'bin' / 'nvcc').is_file() and any(p.exists() for p in libs)


def find_cuda_home() -> Path | None:
    """The CUDA toolkit folder (holding bin/nvcc and lib64/libcudart.so), or None.

    ``$CUDA_HOME`` / ``$CUDA_PATH`` win when set. Otherwise the folder above the nvcc on
    PATH is used only if it really is a toolkit: an nvcc that is a small wrapper script
    (as in /usr/local/bin here) would make torch link against a missing -lcudart.
    """
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        if os.environ.get(var):
            return Path(os.environ[var])
    candidates = []
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates += [Path(nvcc).parent.parent, Path(os.path.realpath(nvcc)).parent.parent]
    if torch.version.cuda:
        candidates.append(Path(f'/usr/local/cuda-{torch.version.cuda}'))
    candidates.append(Path('/usr/local/cuda'))
    for home in candidates:
        if _toolkit_ok(home):
            return home
    return None


def _cuda_arch_list() -> str:
    if os.environ.get('TORCH_CUDA_ARCH_LIST'):
        return os.environ['TORCH_CUDA_ARCH_LIST']
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i)
                       for i in range(torch.cuda.device_count())})
        return ';'.join(f'{major}.{minor}' for major, minor in caps)
    return DEFAULT_CUDA_ARCH


def _source_files(with_cuda: bool) -> tuple:
    return CPU_SOURCES + HEADERS + (CUDA_SOURCES if with_cuda else ())


def build_tag(with_cuda: bool, csrc: Path | None = None) -> str:
    """Name of the build folder: versions, build kind and a hash of the sources' CONTENT
    and the flags. The sources' location does not enter it, so every checkout (and every
    process) with the same sources shares one build."""
    csrc = CSRC if csrc is None else Path(csrc)
    digest = hashlib.sha256()
    for name in sorted(_source_files(with_cuda)):
        digest.update(name.encode() + b'\0' + (csrc / name).read_bytes() + b'\0')
    digest.update(repr((CFLAGS, CUDA_CFLAGS)).encode())
    cuda = f'cu{torch.version.cuda}' if torch.version.cuda else 'nocuda'
    kind = f'cuda-sm{_cuda_arch_list()}' if with_cuda else 'cpu'
    tag = (f'torch{torch.__version__}_{cuda}_py{sys.version_info[0]}{sys.version_info[1]}'
           f'_{kind}_{digest.hexdigest()[:12]}')
    return re.sub(r'[^A-Za-z0-9._-]+', '-', tag)


@contextlib.contextmanager
def _build_env(with_cuda: bool, cuda_home: Path | None):
    """Environment for one build: CUDA_HOME and an arch list when no GPU is visible."""
    saved = {k: os.environ.get(k) for k in ('CUDA_HOME', 'TORCH_CUDA_ARCH_LIST')}
    if with_cuda:
        if cuda_home is not None and not os.environ.get('CUDA_HOME'):
            os.environ['CUDA_HOME'] = str(cuda_home)
        os.environ.setdefault('TORCH_CUDA_ARCH_LIST', _cuda_arch_list())
    # torch logs a warning when it finds a toolkit but no GPU; that is expected here
    log = logging.getLogger('torch.utils.cpp_extension')
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
        if with_cuda and cuda_home is not None:
            cpp_extension.CUDA_HOME = str(cuda_home)  # read when the ninja file is written
        yield cpp_extension
    finally:
        log.setLevel(level)
        for key, value in saved.items():
            if key == 'CUDA_HOME' and value is None and with_cuda:
                continue  # keep the toolkit found: later CUDA builds in this process use it
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _first_error(exc: BaseException) -> str:
    """The most telling line of a build failure: the first compiler error, if any."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for pattern in (r'\berror\b\s*:', r'\berror\b'):
        for line in lines:
            if re.search(pattern, line, re.IGNORECASE) and not line.startswith('['):
                return line[:300]
    return lines[0][:300] if lines else type(exc).__name__


def _notice(message: str) -> None:
    """One line on stderr: what densebox is doing while the user waits."""
    print(f'densebox.ops: {message}', file=sys.stderr, flush=True)


_TYPICAL_SECONDS = {False: '15-60 s', True: '30-120 s'}  # C++ / C++ and CUDA, 2-16 cores
_TIMES_FILE = 'build_seconds.json'


def _last_build_seconds(with_cuda: bool) -> float | None:
    try:
        data = json.loads((cache_root() / _TIMES_FILE).read_text())
        value = data.get('cuda' if with_cuda else 'cpu')
        return float(value) if isinstance(value, (int, float)) else None
    except (OSError, ValueError, AttributeError):
        return None


def _remember_build_seconds(with_cuda: bool, seconds: float) -> None:
    path = cache_root() / _TIMES_FILE
    with contextlib.suppress(OSError, ValueError):
        try:
            data = json.loads(path.read_text())
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data['cuda' if with_cuda else 'cpu'] = round(seconds, 1)
        tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


def _stage_sources(build_dir: Path, with_cuda: bool) -> Path:
    """Copy the sources into ``build_dir/src`` (once: the folder name is their hash) and
    return that folder. Compiling from there keeps the paths in the ninja file the same for
    every checkout, so ninja never sees a changed command and rebuilds."""
    src = build_dir / 'src'
    src.mkdir(exist_ok=True)
    for name in _source_files(with_cuda):
        target = src / name
        data = (CSRC / name).read_bytes()
        if target.is_file() and target.read_bytes() == data:
            continue  # rewriting would touch its mtime and make ninja rebuild
        tmp = target.with_name(f'.{name}.{os.getpid()}.tmp')
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return src


def _cuda_description(cuda_home: Path) -> str:
    """Which toolkit the CUDA build uses: CUDA_HOME, nvcc (and its release), libcudart."""
    import subprocess
    nvcc = cuda_home / 'bin' / 'nvcc'
    release = 'version unknown'
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(nvcc), '--version'], capture_output=True, text=True,
                             timeout=30).stdout
        match = re.search(r'release ([0-9.]+)', out)
        if match:
            release = f'release {match.group(1)}'
    libs = [cuda_home / 'lib64' / 'libcudart.so', cuda_home / 'lib' / 'libcudart.so',
            *sorted(cuda_home.glob('targets/*/lib/libcudart.so'))]
    cudart = next((str(p) for p in libs if p.exists()), 'libcudart.so NOT FOUND')
    return (f'CUDA_HOME={cuda_home}, nvcc={nvcc} ({release}), libcudart={cudart}, '
            f'arch {_cuda_arch_list()} (torch built with CUDA {torch.version.cuda})')


def _compile_and_load(cpp_extension, name: str, sources: list, src: Path, build_dir: Path,
                      with_cuda: bool, verbose: bool) -> Ops:
    """``cpp_extension.load`` (ninja: compiles what is out of date, then loads the library)
    and the operator namespace it registered."""
    cpp_extension.load(
        name=name,
        sources=sources,
        extra_cflags=list(CFLAGS) + (['-DDENSEBOX_WITH_CUDA'] if with_cuda else []),
        extra_cuda_cflags=list(CUDA_CFLAGS) + ['-DDENSEBOX_WITH_CUDA'],
        extra_include_paths=[str(src)],
        build_directory=str(build_dir),
        with_cuda=with_cuda,
        is_python_module=False,  # operators registered with TORCH_LIBRARY
        verbose=verbose,
    )
    ops = getattr(torch.ops, name)
    ops.with_cuda()  # fails here, inside the logged block, if registration is broken
    return ops


@contextlib.contextmanager
def _build_lock(build_dir: Path, what: str):
    """Hold ``build_dir/densebox.lock`` (an OS lock: released if its holder dies) so that
    one process compiles and the others wait for it and then load its result."""
    from filelock import FileLock, Timeout
    lock = FileLock(str(build_dir / 'densebox.lock'))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _notice(f'another process is building the {what} in {build_dir}; waiting for it')
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build(with_cuda: bool, verbose: bool = False) -> Ops:
    """Compile (or reuse the cached build of) the extension and import it.

    The build folder is named by :func:`build_tag` (the sources' content, not their path),
    holds its own copy of the sources and is locked while it is built, so several
    processes and checkouts share one build: the first compiles (printing one line that
    says so and about how long it takes), the others wait and load it.

    Args:
        with_cuda (bool): also compile the CUDA kernels (needs nvcc, not a GPU).
        verbose (bool): print the compiler commands and output.

    Returns:
        The operator namespace ``torch.ops.<name>`` with ``nms``, ``roi_align_forward``,
        ``roi_align_backward`` and ``with_cuda`` (see csrc/bindings.cpp for the schemas).

    Raises:
        ExtensionBuildError: no compiler / nvcc, or the build failed; the message names the
            build log (and, for CUDA, the toolkit that was used).
    """
    cxx = os.environ.get('CXX', 'c++')
    if shutil.which(cxx) is None:
        raise ExtensionBuildError(f'no C++ compiler found (looked for {cxx!r} on PATH)')
    cuda_home = find_cuda_home() if with_cuda else None
    if with_cuda and cuda_home is None:
        raise ExtensionBuildError(
            'no CUDA toolkit found for the CUDA kernels (set CUDA_HOME to the folder holding '
            'bin/nvcc and lib64/libcudart.so)')
    tag = build_tag(with_cuda)
    build_dir = cache_root() / tag
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExtensionBuildError(f'cannot create the build folder {build_dir} ({error}); '
                                  f'point {ENV_CACHE} at a writable folder') from error
    log_path = build_dir / 'build.log'
    name = f"densebox_ops_{'cuda' if with_cuda else 'cpu'}_{tag.rsplit('_', 1)[-1]}"
    what = 'C++ and CUDA kernels' if with_cuda else 'C++ kernels'
    toolkit = ''  # which CUDA toolkit, said before a CUDA compile and in its failure
    start = time.perf_counter()
    with _build_lock(build_dir, what), _build_env(with_cuda, cuda_home) as cpp_extension:
        compiling = not (build_dir / f'{name}.so').is_file()
        if compiling:
            last = _last_build_seconds(with_cuda)
            took = (f'about {last:.0f} s last time here' if last is not None
                    else f'typically {_TYPICAL_SECONDS[with_cuda]}')
            _notice(f'compiling the {what} (once per torch / source version; {took}); '
                    f'cached in {build_dir}')
            if with_cuda:
                toolkit = _cuda_description(cuda_home)
                _notice(f'CUDA build with {toolkit}')
        src = _stage_sources(build_dir, with_cuda)
        sources = [str(src / s) for s in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())]
        try:
            ops = _compile_and_load(cpp_extension, name, sources, src, build_dir, with_cuda,
                                    verbose)
        except Exception as exc:  # compiler errors arrive as RuntimeError with the output
            if with_cuda and not toolkit:
                toolkit = _cuda_description(cuda_home)
            log_path.write_text(
                f'densebox.ops build of {name} in {build_dir}\n'
                f"CUDA_HOME={os.environ.get('CUDA_HOME')} "
                f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}\n"
                + (f'{toolkit}\n' if toolkit else '') + '\n'
                + ''.join(traceback.format_exception(exc)))
            cause = f' ({toolkit})' if with_cuda else ''
            raise ExtensionBuildError(f'building {name} failed: {_first_error(exc)}{cause}',
                                      log_path) from exc
    seconds = time.perf_counter() - start
    if compiling:
        _remember_build_seconds(with_cuda, seconds)
        _notice(f'built the {what} in {seconds:.0f} s')
    with contextlib.suppress(OSError):
        log_path.write_text(f'densebox.ops: {build_dir / name}.so loaded as torch.ops.{name} '
                            f'({seconds:.1f} s including any compilation)\n')
    return ops


_modules: dict[bool, Ops] = {}


def load_extension(with_cuda: bool) -> Ops:
    """The loader used by the backend choice: :func:`build`, once per process and kind."""
    if with_cuda not in _modules:
        _modules[with_cuda] = build(with_cuda)
    return _modules[with_cuda]


# ----------------------------------------------------------------------------- choosing

@dataclass
class _Choice:
    ext: Ops | None  # None: torchvision.ops for every device
    cuda: bool              # the extension also serves CUDA tensors


_lock = threading.RLock()
_choice: _Choice | None = None
_warned = False


def _mode() -> str:
    mode = os.environ.get(ENV_BACKEND, '').strip().lower() or 'auto'
    if mode not in ('auto',) + BACKENDS:
        raise ValueError(f'{ENV_BACKEND}={mode!r}: expected one of auto, ext, torchvision')
    return mode


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=6)  # the caller of nms() etc.


def _decide() -> _Choice:
    mode = _mode()
    if mode == 'torchvision':
        return _Choice(ext=None, cuda=False)
    want_cuda = torch.cuda.is_available()
    try:
        return _Choice(ext=load_extension(want_cuda), cuda=want_cuda)
    except ExtensionBuildError as error:
        if mode == 'ext':
            raise
        failure = error
    tail = (f' Build log: {failure.log_path}.' if failure.log_path else '') + (
        f' Set {ENV_BACKEND}=torchvision to silence this, or {ENV_BACKEND}=ext to make it '
        'an error.')
    if want_cuda:  # keep the C++ kernels for CPU tensors if only the CUDA part fails
        try:
            ext = load_extension(False)
        except ExtensionBuildError:
            pass
        else:
            _warn_once(f'densebox.ops: the CUDA kernels are unavailable ({failure}); CUDA '
                       f'tensors use torchvision.ops, CPU tensors the C++ kernels.{tail}')
            return _Choice(ext=ext, cuda=False)
    _warn_once(f'densebox.ops: the C++ extension is unavailable ({failure}); using '
               f'torchvision.ops instead.{tail}')
    return _Choice(ext=None, cuda=False)


def _current() -> _Choice:
    global _choice
    if _choice is None:
        with _lock:
            if _choice is None:
                _choice = _decide()
    return _choice


def extension_for(device: torch.device | str) -> Ops | None:
    """The extension serving tensors on ``device``, or None for torchvision.ops.

    ``meta`` tensors (shapes only) go to the extension too; its shape-only ops handle them.
    """
    device = torch.device(device)
    choice = _current()
    if choice.ext is None or device.type not in ('cpu', 'cuda', 'meta'):
        return None
    if device.type == 'cuda' and not choice.cuda:
        return None
    return choice.ext


def backend(device: torch.device | str = 'cpu') -> str:
    """Name of the backend serving tensors on ``device``: ``'ext'`` or ``'torchvision'``.

    The first call decides (and builds the extension if needed).
    """
    return 'ext' if extension_for(device) is not None else 'torchvision'


def reset() -> None:
    """Forget the backend choice (and the one-warning flag); the next op decides again.

    Built modules stay imported. Meant for tests and for changing ``DENSEBOX_OPS`` at run
    time.
    """
    global _choice, _warned
    with _lock:
        _choice = None
        _warned = False

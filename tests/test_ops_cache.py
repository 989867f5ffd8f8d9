"""No silent waits and no rebuilds: the ops build folder is keyed by the sources' content
and locked, so two processes building at once compile once and two checkouts at different
paths share one build; compiling and CPU kernel timing each say so in one line; a CUDA
build names the toolkit it used."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densebox.ops import _ext
from densebox.config import REPO_ROOT

PACKAGE = Path(REPO_ROOT) / 'densebox'


def _copy_package(dest: Path) -> Path:
    """A second 'checkout': the densebox package at another path."""
    shutil.copytree(PACKAGE, dest / 'densebox', ignore=shutil.ignore_patterns('__pycache__'))
    return dest


def test_build_tag_depends_on_content_not_on_path(tmp_path):
    a = Path(shutil.copytree(_ext.CSRC, tmp_path / 'a' / 'csrc'))
    b = Path(shutil.copytree(_ext.CSRC, tmp_path / 'far' / 'away' / 'csrc'))
    assert _ext.build_tag(False, a) == _ext.build_tag(False, b) == _ext.build_tag(False)
    with open(b / 'nms_cpu.cpp', 'a') as f:
        f.write('\n// changed\n')
    assert _ext.build_tag(False, b) != _ext.build_tag(False, a)


FAKE_BUILD = r'''
import sys, time
from pathlib import Path
from densebox.ops import _ext
calls, ready, peer = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

def fake_compile(cpp_extension, name, sources, src, build_dir, with_cuda, verbose):
    library = build_dir / f'{name}.so'
    if not library.exists():  # what ninja would compile
        with open(calls, 'a') as f:
            f.write(f'{_ext.CSRC}\n')
        time.sleep(2)
        library.write_bytes(b'a library')
    class Ops:
        def with_cuda(self):
            return False
    return Ops()

_ext._compile_and_load = fake_compile
ready.write_text('ready')
while not peer.exists():  # start building together
    time.sleep(0.05)
_ext.build(False)
print(_ext.CSRC)
'''


def test_two_processes_from_two_checkouts_compile_once(tmp_path):
    calls = tmp_path / 'calls.txt'
    env = dict(os.environ, DENSEBOX_OPS_CACHE=str(tmp_path / 'cache'))
    procs = []
    for me, other in (('a', 'b'), ('b', 'a')):
        root = _copy_package(tmp_path / me)
        procs.append(subprocess.Popen(
            [sys.executable, '-c', FAKE_BUILD, str(calls), str(tmp_path / f'{me}.ready'),
             str(tmp_path / f'{other}.ready')],
            env=dict(env, PYTHONPATH=str(root)), cwd=tmp_path, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    errs, sources = [], []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        errs.append(err)
        sources.append(out.strip())
    assert sources == [str((tmp_path / me / 'densebox' / 'ops' / 'csrc').resolve())
                       for me in ('a', 'b')]  # two checkouts at two paths
    compiled = calls.read_text().splitlines()
    assert len(compiled) == 1 and compiled[0] in sources  # one compile for both
    assert sum('compiling the C++ kernels' in e for e in errs) == 1
    assert sum('another process is building' in e for e in errs) == 1
    folders = list((tmp_path / 'cache').iterdir())
    folders = [f for f in folders if f.is_dir()]
    assert len(folders) == 1  # both keyed to the same folder
    for name in _ext.CPU_SOURCES + _ext.HEADERS:  # compiled from its own copy of the sources
        assert (folders[0] / 'src' / name).read_bytes() == (_ext.CSRC / name).read_bytes()
    assert (Path(_ext.cache_root()) != tmp_path / 'cache')  # this process was not touched


def test_another_checkout_loads_the_real_build_without_rebuilding(tmp_path):
    ops = _ext.build(False)  # the session's build (compiled here if no test did yet)
    build_dir = _ext.cache_root() / _ext.build_tag(False)
    library = next(build_dir.glob('densebox_ops_cpu_*.so'))
    ninja_log = build_dir / '.ninja_log'
    before = (library.stat().st_mtime_ns, ninja_log.read_bytes() if ninja_log.exists() else b'')
    assert ops.with_cuda() in (True, False)
    root = _copy_package(tmp_path / 'checkout2')
    code = ('import torch; from densebox.ops import _ext, nms; '
            'assert str(_ext.CSRC).startswith(%r), _ext.CSRC; '
            'b = torch.tensor([[0, 0, 10, 10.], [1, 1, 10, 10], [20, 20, 30, 30]]); '
            'print(nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist(), _ext.backend())'
            % str(root.resolve()))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(root), DENSEBOX_OPS='ext'),
                         cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['[0,', '2]', 'ext']
    assert 'compiling' not in out.stderr
    after = (library.stat().st_mtime_ns, ninja_log.read_bytes() if ninja_log.exists() else b'')
    assert after == before  # ninja found nothing to do: same commands, same paths


def test_a_failed_cuda_build_names_the_toolkit(tmp_path, monkeypatch, capsys):
    from torch.utils import cpp_extension
    home = tmp_path / 'cuda'
    (home / 'bin').mkdir(parents=True)
    (home / 'lib64').mkdir()
    (home / 'lib64' / 'libcudart.so').write_bytes(b'')
    nvcc = home / 'bin' / 'nvcc'
    nvcc.write_text('#!/bin/sh\necho "Cuda compilation tools, release 42.1, V42.1.0"\n'
                    '[ "$1" = "--version" ] && exit 0\necho "nvcc: this toolkit is a fake" >&2\n'
                    'exit 1\n')
    nvcc.chmod(0o755)
    monkeypatch.setenv('CUDA_HOME', str(home))
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '9.0')
    monkeypatch.setenv('DENSEBOX_OPS_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setattr(cpp_extension, 'CUDA_HOME', cpp_extension.CUDA_HOME)  # restored after

    def failing_compile(*args):  # nvcc's verdict, without compiling the C++ files first
        raise RuntimeError('Error building extension: nvcc fatal: this toolkit is a fake')

    monkeypatch.setattr(_ext, '_compile_and_load', failing_compile)
    with pytest.raises(_ext.ExtensionBuildError) as info:
        _ext.build(with_cuda=True)
    message = str(info.value)
    for part in ('nvcc fatal', f'CUDA_HOME={home}', f'nvcc={nvcc}', 'release 42.1',
                 f'libcudart={home / "lib64" / "libcudart.so"}', 'build log'):
        assert part in message, part
    assert f'CUDA_HOME={home}' in info.value.log_path.read_text()
    err = capsys.readouterr().err
    assert 'compiling the C++ and CUDA kernels' in err and 'CUDA build with CUDA_HOME=' in err


def test_cpu_kernel_timing_says_so_once(tmp_path, monkeypatch, capsys):
    import warnings

    from densebox.apis import inference, init_model
    from densebox.ops.conv import nnpack_available
    monkeypatch.setenv('DENSEBOX_CPU_CONV_CACHE', str(tmp_path / 'choices.json'))
    monkeypatch.setenv('DENSEBOX_CPU_CONV', 'auto')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = init_model(str(Path(REPO_ROOT) / 'configs' / 'quickstart_ssd_shapes.py'),
                           device='cpu')
    img = np.zeros((100, 140, 3), np.uint8)
    capsys.readouterr()
    inference(img, model)
    first = [ln for ln in capsys.readouterr().err.splitlines() if 'timing' in ln]
    inference(img, model)
    again = [ln for ln in capsys.readouterr().err.splitlines() if 'timing' in ln]
    if not nnpack_available():  # nothing to choose between, nothing timed
        assert first == [] and again == []
        return
    assert len(first) == 1 and again == []
    line = first[0]
    assert 'input 1x3x128x128' in line and 'once per input size' in line
    assert str(tmp_path / 'choices.json') in line and 'DENSEBOX_CPU_CONV=aten' in line
    # a new model (a new process) reads the choices file and times nothing
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fresh = init_model(str(Path(REPO_ROOT) / 'configs' / 'quickstart_ssd_shapes.py'),
                           device='cpu')
    inference(img, fresh)
    assert 'timing' not in capsys.readouterr().err

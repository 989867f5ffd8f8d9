"""Checkpoints that load without running code from the file, and are written atomically.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and allow-listed
types are unpickled. mmengine 0.10 checkpoints also hold its ``HistoryBuffer`` (in the
message hub) and numpy arrays / scalars. Those few types are added to torch's allow-list
here; nothing is ever loaded with ``weights_only=False``, so a checkpoint from the internet
cannot execute code. Every URL scheme mmengine knows goes through the same function (see
:mod:`densebox.engine.checkpoint_schemes`).

Writes go to a temporary file in the same folder that is renamed over the target only when
complete, so a run killed while saving never leaves a truncated checkpoint behind; the
temporary file of a killed save is removed when the next run starts
(:func:`remove_stale_temp_files`).
"""
import contextlib
import io
import os
import os.path as osp
import pickle
import re
import secrets
import socket
import threading
from typing import List, Optional, Union

import numpy as np
import torch
from torch import nn
from mmengine.logging.history_buffer import HistoryBuffer

from .torchscript_weights import is_torchscript_archive, load_torchscript_state_dict


def _numpy_safe_globals() -> list:
    """numpy types that pickled arrays and scalars reference."""
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in
                     (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                      np.uint32, np.uint64, np.float16, np.float32, np.float64)]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


# HistoryBuffer's built-in statistics (custom ones are registered on the class at run time).
_HISTORY_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def _history_buffer_getattr(obj, name: str):
    """Stands in for ``getattr`` while unpickling.

    A pickled ``HistoryBuffer`` refers to its statistics functions as
    ``getattr(HistoryBuffer, 'mean')``. Allowing the real ``getattr`` would let a file reach any
    attribute of any object (``getattr(os, 'system')``), so only those methods of a
    ``HistoryBuffer`` are handed out.
    """
    allowed = _HISTORY_STATISTICS | set(HistoryBuffer._statistics_methods)
    if (obj is HistoryBuffer or isinstance(obj, HistoryBuffer)) and name in allowed:
        return getattr(obj, name)
    raise RuntimeError(f'checkpoint asks for attribute {name!r} of a {type(obj).__name__}; '
                       'only HistoryBuffer statistics may be looked up')


SAFE_GLOBALS = [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
                *_numpy_safe_globals()]

# torch.load as torch defines it; torch.load itself is swapped while a guard is active.
_torch_load = torch.serialization.load


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects that only a full unpickle (which can run code) would load."""


def safe_torch_load(filename, map_location=None, source: Optional[str] = None,
                    mmap: Optional[bool] = None):
    """``torch.load`` with ``weights_only=True`` and densebox's allow-list.

    A TorchScript archive (OpenAI's CLIP releases are ones) gives its state dict, read by
    :func:`densebox.engine.torchscript_weights.load_torchscript_state_dict` without running
    the archive's code.

    Args:
        filename: a path or a binary file object.
        map_location: as in ``torch.load``.
        source: what the user asked for when that is not ``filename`` (a URL, an
            ``open-mmlab://`` name); the error names both.
        mmap: as in ``torch.load``.

    Raises:
        UnsafeCheckpointError: naming the file, when it holds anything else.
    """
    if isinstance(filename, (str, os.PathLike)) and is_torchscript_archive(filename):
        try:
            return load_torchscript_state_dict(filename)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(str(err)) from err
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        try:
            return _torch_load(filename, map_location=map_location, weights_only=True,
                               mmap=mmap)
        except pickle.UnpicklingError as err:
            name = (str(filename) if isinstance(filename, (str, os.PathLike))
                    else getattr(filename, 'name', None))
            if name is None:
                name = source or 'the checkpoint'
            elif source and source != name:
                name = f'{name} (the file of {source})'
            raise UnsafeCheckpointError(
                f'{name} could not be loaded with weights_only=True: it holds objects other '
                'than tensors, numpy arrays and the mmengine types densebox allows. densebox '
                'never unpickles arbitrary objects, because that can run code from the file. '
                f'Convert it to a plain state dict first. ({err})') from err


# --------------------------------------------------------------------- torch.load guard
_guard = threading.local()
_guard_lock = threading.Lock()
_guard_depth = 0
_guard_replaced = None


def _guarded_torch_load(f, map_location=None, pickle_module=None, *, weights_only=None,
                        mmap=None, **pickle_load_args):
    """What ``torch.load`` is while :func:`weights_only_torch_load` is active: the caller's
    ``weights_only=False`` or ``pickle_module`` are refused, never obeyed."""
    if pickle_module is not None and pickle_module is not pickle:
        raise UnsafeCheckpointError(
            f'{getattr(_guard, "source", None) or f}: a checkpoint load asked for the custom '
            f'unpickler {pickle_module!r}; densebox loads checkpoints with weights_only=True only')
    return safe_torch_load(f, map_location=map_location, mmap=mmap,
                           source=getattr(_guard, 'source', None))


@contextlib.contextmanager
def weights_only_torch_load(source: Optional[str] = None):
    """While active, ``torch.load`` anywhere in the process loads with ``weights_only=True``
    and densebox's allow-list, whatever its caller asks for.

    mmengine's checkpoint loaders (and ``torch.hub.load_state_dict_from_url``, which they
    use) call ``torch.load`` themselves; running them inside this guard means that no scheme,
    including one registered later, can unpickle code. ``source`` (the name the user gave)
    is used in error messages. Other threads' loads during this time are made safe too.
    """
    global _guard_depth, _guard_replaced
    outer_source = getattr(_guard, 'source', None)
    _guard.source = source or outer_source
    with _guard_lock:
        if _guard_depth == 0:
            _guard_replaced = torch.load
            torch.load = _guarded_torch_load
        _guard_depth += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if _guard_depth == 0:
                torch.load = _guard_replaced
        _guard.source = outer_source


# ------------------------------------------------------------------------------ saving
# `.tmp_densebox_<host>_<pid>_<random>.pth`: the host and pid tell a live writer's file
# from the leftover of a killed one.
_TEMP_PREFIX = '.tmp_densebox_'
_TEMP_PATTERN = re.compile(r'^\.tmp_densebox_(?P<host>[A-Za-z0-9.-]*)_(?P<pid>\d+)_[0-9a-f]+\.pth$')


def _host() -> str:
    return re.sub(r'[^A-Za-z0-9.-]', '-', socket.gethostname())


def _open_new_temp_file(folder: str):
    """A new temporary file next to the checkpoint, created like ``open(path, 'wb')`` would
    (mode 0666 less the umask; ``mkstemp`` would make it 0600)."""
    while True:
        path = osp.join(folder, f'{_TEMP_PREFIX}{_host()}_{os.getpid()}_{secrets.token_hex(4)}.pth')
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return path, os.fdopen(fd, 'wb')


def atomic_save_checkpoint(checkpoint: dict, filename: str, file_client_args=None,
                           backend_args=None) -> None:
    """Save ``checkpoint`` to ``filename`` through a temporary file and an atomic rename.

    The file gets the permissions a plain ``open()`` would give it (0666 less the umask).
    Remote paths (``s3://`` ...) go to mmengine's writer.
    """
    if not isinstance(filename, (str, os.PathLike)) or '://' in str(filename):
        from mmengine.runner.checkpoint import save_checkpoint as mmengine_save
        return mmengine_save(checkpoint, filename, file_client_args, backend_args)
    filename = osp.abspath(osp.expanduser(str(filename)))
    os.makedirs(osp.dirname(filename), exist_ok=True)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    tmp, f = _open_new_temp_file(osp.dirname(filename))
    try:
        with f:
            _write_all(f, buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _write_all(f, data) -> None:
    """Write the serialised checkpoint (a separate function so that tests can stop a save
    half-way, as a killed process would)."""
    f.write(data)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete the temporary files that killed saves of densebox left in ``folder``.

    Only files named like densebox's own temporary checkpoints are touched, and not those
    of a save still running in another live process on this machine. Returns the removed paths.
    """
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        match = _TEMP_PATTERN.match(name)
        if match is None:
            continue
        pid = int(match.group('pid'))
        if match.group('host') == _host() and pid != os.getpid() and _pid_alive(pid):
            continue
        path = osp.join(folder, name)
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, checkpoint: Union[str, os.PathLike, dict],
                 strict: bool = True) -> dict:
    """Load a densebox / mmengine checkpoint (file or loaded dict) into ``model``.

    Accepts ``{'state_dict': ..., 'meta': ...}`` (what training writes) or a bare state
    dict; a ``module.`` prefix (DataParallel) is removed. Returns the checkpoint's ``meta``
    (``{}`` when it has none). A mismatch raises a ``RuntimeError`` naming the file and the
    first missing / unexpected keys.
    """
    name = str(checkpoint) if not isinstance(checkpoint, dict) else 'the checkpoint'
    if isinstance(checkpoint, dict):
        ckpt = checkpoint
    else:
        if not osp.isfile(str(checkpoint)):
            raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
        ckpt = safe_torch_load(str(checkpoint), map_location='cpu')
    if not isinstance(ckpt, dict):
        raise RuntimeError(f'{name} holds a {type(ckpt).__name__}, not a state dict')
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RuntimeError(f'{name}: "state_dict" is not a mapping of names to tensors')
    state = _strip_prefix(dict(state), 'module.')
    result = model.load_state_dict(state, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        def head(keys):
            return ', '.join(keys[:5]) + (f' ... ({len(keys)} in all)' if len(keys) > 5 else '')
        parts = []
        if result.missing_keys:
            parts.append(f'missing keys: {head(result.missing_keys)}')
        if result.unexpected_keys:
            parts.append(f'unexpected keys: {head(result.unexpected_keys)}')
        raise RuntimeError(f'{name} does not fit the model built from the config ('
                           + '; '.join(parts) + '). Is it the checkpoint of this config, or '
                           'one that needs a converter (densebox.converters)?')
    meta = ckpt.get('meta') if 'state_dict' in ckpt else None
    return dict(meta) if isinstance(meta, dict) else {}

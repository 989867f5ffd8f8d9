"""Checkpoints that load without running code from the file, and are written atomically.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and allow-listed
types are unpickled. mmengine 0.10 checkpoints also hold its ``HistoryBuffer`` (in the
message hub) and numpy arrays / scalars. Those few types are added to torch's allow-list
here; nothing is ever loaded with ``weights_only=False``, so a checkpoint from the internet
cannot execute code.

Writes go to a temporary file in the same folder that is renamed over the target only when
complete, so a run killed while saving never leaves a truncated checkpoint behind.
"""
import io
import os
import pickle
import os.path as osp
import tempfile

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

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


def safe_torch_load(filename, map_location=None):
    """``torch.load`` with ``weights_only=True`` and densebox's allow-list.

    A TorchScript archive (OpenAI's CLIP releases are ones) gives its state dict, read by
    :func:`densebox.engine.torchscript_weights.load_torchscript_state_dict` without running
    the archive's code. Raises a ``RuntimeError`` naming the file when it holds anything else.
    """
    if isinstance(filename, (str, os.PathLike)) and is_torchscript_archive(filename):
        return load_torchscript_state_dict(filename)
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        try:
            return torch.load(filename, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            name = filename if isinstance(filename, (str, os.PathLike)) else 'the checkpoint'
            raise RuntimeError(
                f'{name} could not be loaded with weights_only=True: it holds objects other '
                'than tensors, numpy arrays and the mmengine types densebox allows. densebox '
                'never unpickles arbitrary objects, because that can run code from the file. '
                f'Convert it to a plain state dict first. ({err})') from err


def _load_from_local(filename, map_location):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    return safe_torch_load(filename, map_location=map_location)


def _load_from_http(filename, map_location=None, model_dir=None, progress=False):
    from torch.hub import load_state_dict_from_url
    return load_state_dict_from_url(filename, model_dir=model_dir, map_location=map_location,
                                    progress=progress, weights_only=True)


def atomic_save_checkpoint(checkpoint: dict, filename: str, file_client_args=None,
                           backend_args=None) -> None:
    """Save ``checkpoint`` to ``filename`` through a temporary file and an atomic rename."""
    if not isinstance(filename, (str, os.PathLike)) or '://' in str(filename):
        from mmengine.runner.checkpoint import save_checkpoint as mmengine_save
        return mmengine_save(checkpoint, filename, file_client_args, backend_args)
    filename = osp.abspath(osp.expanduser(str(filename)))
    os.makedirs(osp.dirname(filename), exist_ok=True)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.pth', dir=osp.dirname(filename))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


_installed = False


def install_safe_checkpointing() -> None:
    """Route mmengine's checkpoint loading through :func:`safe_torch_load` and its saving
    through :func:`atomic_save_checkpoint`. Idempotent."""
    global _installed
    if _installed:
        return
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=_load_from_http,
                                     force=True)
    import mmengine.runner.runner as runner_module
    runner_module.save_checkpoint = atomic_save_checkpoint
    _installed = True

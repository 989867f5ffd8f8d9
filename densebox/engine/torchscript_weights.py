"""Read the weights of a TorchScript archive without running anything from it.

OpenAI published its CLIP weights (``RN50.pt``, ``ViT-B-16.pt``, ...) as TorchScript
archives. ``torch.jit.load`` would compile and run the archive's code, and
``torch.load(weights_only=True)`` refuses such archives, so densebox reads them itself:

- ``<archive>/data.pkl`` is a pickle of the module tree. It is unpickled with an unpickler
  that knows only tensors, storages and ``OrderedDict``; each ``__torch__.*`` module class
  becomes an inert record of its attributes. Any other global is an error.
- Which attributes of a module are parameters and buffers is read as text from the class
  declarations in ``<archive>/code/`` (``__parameters__ = ["weight", ...]``); the code is
  never compiled or executed.

The result equals ``torch.jit.load(path).state_dict()``.
"""
from __future__ import annotations

import ast
import pickle
import re
import zipfile
from collections import OrderedDict
from os import PathLike
from typing import Dict, Tuple

import torch

__all__ = ['is_torchscript_archive', 'load_torchscript_state_dict']

_STORAGE_DTYPES = {
    'DoubleStorage': torch.float64, 'FloatStorage': torch.float32,
    'HalfStorage': torch.float16, 'BFloat16Storage': torch.bfloat16,
    'LongStorage': torch.int64, 'IntStorage': torch.int32, 'ShortStorage': torch.int16,
    'CharStorage': torch.int8, 'ByteStorage': torch.uint8, 'BoolStorage': torch.bool,
}
_CLASS_LINE = re.compile(r'^class (\w+)\(')
_MEMBER_LINE = re.compile(r'^\s+(__parameters__|__buffers__) = (\[.*\])\s*$')


def _archive_prefix(archive: zipfile.ZipFile) -> str | None:
    """The archive's top folder when it holds ``data.pkl`` and ``code/``, else None."""
    names = archive.namelist()
    for name in names:
        if name.endswith('/data.pkl') and name.count('/') == 1:
            prefix = name[:-len('data.pkl')]
            if any(n.startswith(prefix + 'code/') for n in names):
                return prefix
    return None


def is_torchscript_archive(path: str | PathLike) -> bool:
    """True when ``path`` is a zip file laid out as ``torch.jit.save`` writes it."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return _archive_prefix(archive) is not None


def _declared_members(archive: zipfile.ZipFile, prefix: str) -> Dict[str, Tuple[list, list]]:
    """``{qualified class name: (parameter names, buffer names)}`` from the code folder.

    A class ``Conv2d`` declared in ``code/__torch__/torch/nn/modules/conv.py`` is
    ``__torch__.torch.nn.modules.conv.Conv2d``, the name data.pkl refers to it by.
    """
    members: Dict[str, Tuple[list, list]] = {}
    code_root = prefix + 'code/'
    for name in archive.namelist():
        if not (name.startswith(code_root) and name.endswith('.py')):
            continue
        module = name[len(code_root):-len('.py')].replace('/', '.')
        current = None
        for line in archive.read(name).decode('utf-8').splitlines():
            match = _CLASS_LINE.match(line)
            if match:
                current = f'{module}.{match.group(1)}'
                members[current] = ([], [])
                continue
            match = _MEMBER_LINE.match(line)
            if match and current is not None:
                names = ast.literal_eval(match.group(2))  # a list of string literals only
                members[current][0 if match.group(1) == '__parameters__' else 1].extend(names)
    return members


class _ScriptModuleRecord:
    """Stands in for one ``__torch__`` module: holds its pickled attributes, does nothing."""
    qualified_name = ''

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                f'{self.qualified_name} has a {type(state).__name__} as its state, not a dict')
        self.attributes = state


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    return storage.as_strided(tuple(size), tuple(stride), storage_offset)


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles data.pkl into records and tensors; every other global is refused."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._record_classes: Dict[str, type] = {}
        self._storages: Dict[str, torch.Tensor] = {}

    def find_class(self, module, name):
        if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
            return _rebuild_tensor
        if (module, name) == ('collections', 'OrderedDict'):
            return OrderedDict
        if module == 'torch' and name in _STORAGE_DTYPES:
            return name  # a storage type is only a dtype tag in persistent ids
        if module == '__torch__' or module.startswith('__torch__.'):
            qualified = f'{module}.{name}'
            if qualified not in self._record_classes:
                self._record_classes[qualified] = type(
                    name, (_ScriptModuleRecord,), {'qualified_name': qualified})
            return self._record_classes[qualified]
        raise pickle.UnpicklingError(
            f'{self._path}: the TorchScript archive refers to {module}.{name}; only tensors '
            'and modules may appear in a weights file, so densebox refuses to read it')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'):
            raise pickle.UnpicklingError(f'{self._path}: unexpected persistent id {pid!r}')
        _, storage_type, key, _location, numel = pid
        if storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f'{self._path}: unknown storage type {storage_type!r}')
        if key not in self._storages:
            dtype = _STORAGE_DTYPES[storage_type]
            data = bytearray(self._archive.read(f'{self._prefix}data/{key}'))
            flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
            if flat.numel() != numel:
                raise pickle.UnpicklingError(
                    f'{self._path}: storage {key} holds {flat.numel()} elements, the pickle '
                    f'says {numel}')
            self._storages[key] = flat
        return self._storages[key]


def load_torchscript_state_dict(path: str | PathLike) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict of the TorchScript archive at ``path``, as
    ``torch.jit.load(path).state_dict()`` would give it, read without executing the archive.

    Raises:
        ValueError: ``path`` is not a TorchScript archive.
        pickle.UnpicklingError: the archive holds anything but modules and tensors.
    """
    path = str(path)
    with zipfile.ZipFile(path) as archive:
        if (byteorder := f'{_archive_prefix(archive)}byteorder') in archive.namelist():
            if archive.read(byteorder).strip() != b'little':
                raise ValueError(f'{path}: big-endian TorchScript archives are not supported')
        prefix = _archive_prefix(archive)
        if prefix is None:
            raise ValueError(f'{path} is not a TorchScript archive (no data.pkl and code/)')
        members = _declared_members(archive, prefix)
        with archive.open(prefix + 'data.pkl') as data:
            root = _WeightsUnpickler(data, archive, prefix, path).load()

    state: 'OrderedDict[str, torch.Tensor]' = OrderedDict()

    def collect(record, key_prefix: str) -> None:
        if not isinstance(record, _ScriptModuleRecord):
            raise pickle.UnpicklingError(f'{path}: {key_prefix or "the root"} is not a module')
        if record.qualified_name not in members:
            raise pickle.UnpicklingError(
                f'{path}: no class declaration for {record.qualified_name} in the archive')
        params, buffers = members[record.qualified_name]
        attributes = getattr(record, 'attributes', {})
        for name in (*params, *buffers):
            value = attributes.get(name)
            if isinstance(value, torch.Tensor):  # None for an unset optional bias
                state[key_prefix + name] = value
        for name, value in attributes.items():
            if isinstance(value, _ScriptModuleRecord):
                collect(value, f'{key_prefix}{name}.')

    collect(root, '')
    return state

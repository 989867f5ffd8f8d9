"""One safe loader behind every checkpoint URL scheme mmengine knows.

mmengine resolves ``init_cfg=dict(type='Pretrained', checkpoint=...)``, ``load_from``,
``resume`` and ``load_checkpoint()`` through ``CheckpointLoader.load_checkpoint``, which picks
a loader by prefix: a local path, ``http(s)://``, ``torchvision://`` / ``modelzoo://`` (the
torch hub cache, ``$TORCH_HOME/hub/checkpoints``), ``open-mmlab://`` / ``openmmlab://``,
``mmcls://``, ``pavi://`` and ``s3://`` / ``petrel://`` (file backends). Its own loaders call
``torch.load`` and ``torch.hub.load_state_dict_from_url`` with ``weights_only=False``, which
runs code from the file.

densebox makes this safe in two layers:

1. every name is resolved to a file (downloading into the same caches mmengine and torch use)
   and loaded by :func:`~densebox.engine.checkpoint.safe_torch_load`;
2. ``CheckpointLoader.load_checkpoint`` itself is replaced by :func:`load_checkpoint`, which
   runs whatever loader a prefix selects -- also one registered later, by mmengine or a
   plugin -- inside :func:`~densebox.engine.checkpoint.weights_only_torch_load`, so that
   ``torch.load`` cannot unpickle code while it runs.

``torch.hub.load_state_dict_from_url`` (which torchvision's ``weights=`` API also uses on
the hub cache) is given ``weights_only=True`` as its default.
"""
import difflib
import inspect
import io
import logging
import os
import os.path as osp
import zipfile
from tempfile import TemporaryDirectory
from urllib.parse import urlparse

import torch
import mmengine.runner.checkpoint as mm_ckpt
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log

from .checkpoint import atomic_save_checkpoint, safe_torch_load, weights_only_torch_load


def load_checkpoint(filename: str, map_location=None, logger='current'):
    """Load a checkpoint from a path or any registered URL scheme, never running code.

    This is what ``CheckpointLoader.load_checkpoint`` (and so mmengine's ``_load_checkpoint``,
    ``load_checkpoint``, ``PretrainedInit`` and ``Runner.load_checkpoint`` / ``resume``) is.
    """
    loader = mm_ckpt.CheckpointLoader._get_checkpoint_loader(filename)
    name = getattr(loader, '__name__', type(loader).__name__)
    print_log(f'Loads checkpoint by {name.replace("load_from_", "")} backend from path: '
              f'{filename}', logger=logger)
    with weights_only_torch_load(source=filename):
        return loader(filename, map_location)


# ------------------------------------------------------------------------- local files
def load_from_local(filename, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    return safe_torch_load(filename, map_location=map_location)


# ------------------------------------------------------------------------------- http
def _hub_file(url: str, model_dir=None, progress=False) -> str:
    """The torch hub cache file of ``url`` (``<hub dir>/checkpoints/<file name>``, the place
    ``torch.hub.load_state_dict_from_url`` uses), downloaded if it is not there yet."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        os.makedirs(model_dir, exist_ok=True)
        print_log(f'Downloading {url} to {cached}', logger='current')
        torch.hub.download_url_to_file(url, cached, progress=progress)
    if world_size > 1:
        barrier()  # the other ranks wait for rank 0's download
    if not osp.isfile(cached):
        raise FileNotFoundError(f'{cached} (the download of {url}) does not exist')
    return cached


def _load_hub_file(cached: str, url: str, map_location=None):
    if zipfile.is_zipfile(cached):
        with zipfile.ZipFile(cached) as zf:
            members = zf.infolist()
            if len(members) == 1 and not members[0].is_dir():
                # A checkpoint of torch < 1.6 zipped by hand (torch.hub accepts those): the
                # one member is read from memory, never extracted to a path the zip names.
                return safe_torch_load(io.BytesIO(zf.read(members[0])), map_location,
                                       source=f'{cached} (the file of {url})')
    return safe_torch_load(cached, map_location=map_location, source=url)


def load_from_http(filename, map_location=None, model_dir=None, progress=False):
    """``http(s)://`` URLs: cached in the torch hub folder, rank 0 downloads."""
    return _load_hub_file(_hub_file(filename, model_dir, progress), filename, map_location)


# -------------------------------------------------------------------- named model zoos
def _lookup(table: dict, name: str, filename: str, what: str) -> str:
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=5)
        hint = f'; close matches: {", ".join(close)}' if close else ''
        raise KeyError(f'{filename}: {name!r} is not a known {what} name{hint}')
    return table[name]


def load_from_torchvision(filename, map_location=None):
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``): torchvision's
    ImageNet weights, read from (or downloaded into) the torch hub cache."""
    if filename.startswith('modelzoo://'):
        print_log('The URL scheme "modelzoo://" is deprecated, use "torchvision://" instead',
                  logger='current', level=logging.WARNING)
    name = filename.split('://', 1)[1]
    url = _lookup(mm_ckpt.get_torchvision_models(), name, filename, 'torchvision model')
    return _load_hub_file(_hub_file(url), filename, map_location)


def load_from_openmmlab(filename, map_location=None):
    """``open-mmlab://NAME`` / ``openmmlab://NAME``: mmengine's table of OpenMMLab weights
    (plus ``$MMENGINE_HOME/open_mmlab.json``); a URL or a file under ``$MMENGINE_HOME``."""
    prefix, name = filename.split('://', 1)
    deprecated = mm_ckpt.get_deprecated_model_names()
    if name in deprecated:
        print_log(f'{prefix}://{name} is deprecated in favour of {prefix}://{deprecated[name]}',
                  logger='current', level=logging.WARNING)
        name = deprecated[name]
    url = _lookup(mm_ckpt.get_external_models(), name, filename, 'OpenMMLab model')
    if url.startswith(('http://', 'https://')):
        return _load_hub_file(_hub_file(url), filename, map_location)
    path = osp.join(mm_ckpt._get_mmengine_home(), url)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} (the file of {filename}) does not exist')
    return safe_torch_load(path, map_location=map_location, source=filename)


def load_from_mmcls(filename, map_location=None):
    """``mmcls://NAME``: an mmpretrain / mmcls ImageNet classifier, ``backbone.`` keys only."""
    name = filename[len('mmcls://'):]
    url = _lookup(mm_ckpt.get_mmcls_models(), name, filename, 'mmcls model')
    checkpoint = _load_hub_file(_hub_file(url), filename, map_location)
    return mm_ckpt._process_mmcls_checkpoint(checkpoint)


def load_from_pavi(filename, map_location=None):
    """``pavi://PATH``: downloaded from pavi's model cloud into a temporary folder."""
    try:
        from pavi import modelcloud
    except ImportError as err:
        raise ImportError(f'{filename}: install pavi to load checkpoints from its model '
                          'cloud') from err
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        path = osp.join(tmp_dir, model.name)
        model.download(path)
        return safe_torch_load(path, map_location=map_location, source=filename)


def load_from_ceph(filename, map_location=None, backend='petrel'):
    """``s3://`` / ``petrel://`` (optionally ``name:s3://``): read through mmengine's file
    backend into memory."""
    from mmengine.fileio import get_file_backend
    file_backend = get_file_backend(filename, backend_args={'backend': backend})
    return safe_torch_load(io.BytesIO(file_backend.get(filename)), map_location,
                           source=filename)


# The prefixes mmengine 0.10 registers, each with its densebox loader.
SCHEMES = {
    '': load_from_local,
    ('http://', 'https://'): load_from_http,
    ('modelzoo://', 'torchvision://'): load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_openmmlab,
    'mmcls://': load_from_mmcls,
    'pavi://': load_from_pavi,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): load_from_ceph,
}


def _hub_default_weights_only() -> None:
    """Make ``weights_only=True`` the default of ``torch.hub.load_state_dict_from_url``. The
    function object itself is changed, so that the copies other modules imported by name
    (``torch.utils.model_zoo.load_url``, torchvision's weights API) follow."""
    fn = torch.hub.load_state_dict_from_url
    with_defaults = [p for p in inspect.signature(fn).parameters.values()
                     if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                     and p.default is not inspect.Parameter.empty]
    if fn.__defaults__ and with_defaults and with_defaults[-1].name == 'weights_only':
        fn.__defaults__ = fn.__defaults__[:-1] + (True,)
    elif 'weights_only' in (fn.__kwdefaults__ or {}):
        fn.__kwdefaults__['weights_only'] = True


def install_safe_schemes() -> None:
    """Register densebox's loader for every prefix, replace the dispatcher, and patch the
    module-level names mmengine's own loaders call each other through."""
    loader_cls = mm_ckpt.CheckpointLoader
    for prefixes, loader in SCHEMES.items():
        loader_cls.register_scheme(prefixes=prefixes, loader=loader, force=True)
    loader_cls.load_checkpoint = classmethod(
        lambda cls, filename, map_location=None, logger='current':
        load_checkpoint(filename, map_location, logger))
    for name in ('load_from_local', 'load_from_http', 'load_from_torchvision',
                 'load_from_openmmlab', 'load_from_mmcls', 'load_from_pavi', 'load_from_ceph'):
        setattr(mm_ckpt, name, globals()[name])
    _hub_default_weights_only()


_installed = False


def install_safe_checkpointing() -> None:
    """Route all of mmengine's checkpoint loading through
    :func:`~densebox.engine.checkpoint.safe_torch_load` (:func:`install_safe_schemes`) and
    the Runner's saving through :func:`~densebox.engine.checkpoint.atomic_save_checkpoint`.
    Idempotent."""
    global _installed
    if _installed:
        return
    install_safe_schemes()
    import mmengine.runner.runner as runner_module
    runner_module.save_checkpoint = atomic_save_checkpoint
    _installed = True

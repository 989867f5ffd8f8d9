"""Finding, downloading, verifying and converting zoo weights.

Files live in the cache folder (:func:`cache_dir`: ``$DENSEBOX_HOME/checkpoints``, default
``~/.cache/densebox/checkpoints``):

- ``downloads/<file name of the url>``: the published file as downloaded (or as a user put
  it there by hand, for machines without internet);
- ``<name>.pth``: the converted densebox checkpoint ``{'state_dict', 'meta'}``, with
  ``meta.dataset_meta`` (classes, palette) and ``meta.zoo`` (name, url, source sha256,
  converter). Written through a temporary file and an atomic rename.

Nothing is downloaded unless the caller allows it (``download=True``) or the environment
does (``DENSEBOX_ALLOW_DOWNLOAD=1``). ``file://`` URLs count as downloads; a plain local
path as ``url`` is read in place.
"""
import copy
import hashlib
import os
import os.path as osp
import shutil
import urllib.parse
from typing import List, Optional

import torch

from .manifest import MANIFEST

__all__ = ['ZOO_KINDS', 'ChecksumError', 'clear_cache', 'cache_dir', 'list_models', 'get_entry', 'register_model', 'sha256_file',
           'get_checkpoint', 'source_path', 'ALLOW_DOWNLOAD_ENV', 'HOME_ENV']

HOME_ENV = 'DENSEBOX_HOME'
ALLOW_DOWNLOAD_ENV = 'DENSEBOX_ALLOW_DOWNLOAD'
_REQUIRED = ('kind', 'url', 'converter')
ZOO_KINDS = ('model', 'backbone', 'clip')  # whole models, backbone init weights, CLIP models


def cache_dir() -> str:
    """``$DENSEBOX_HOME/checkpoints``, or ``~/.cache/densebox/checkpoints``."""
    home = os.environ.get(HOME_ENV) or osp.join(osp.expanduser('~'), '.cache', 'densebox')
    return osp.join(home, 'checkpoints')


def list_models(kind: Optional[str] = None) -> List[str]:
    """Names of the zoo entries (``kind='model'`` or ``'backbone'`` to filter), sorted."""
    return sorted(n for n, e in MANIFEST.items() if kind is None or e.get('kind') == kind)


def get_entry(name: str) -> dict:
    """A copy of the manifest entry ``name``; ``KeyError`` naming the known ones."""
    if name not in MANIFEST:
        raise KeyError(f'{name!r} is not in the densebox model zoo; known: '
                       f'{", ".join(list_models())}')
    return copy.deepcopy(MANIFEST[name])


def register_model(name: str, **entry) -> None:
    """Add (or replace) a zoo entry at run time, e.g. weights of your own on a file server.

    Needs ``kind``, ``url`` and ``converter`` (``'densebox'`` for densebox checkpoints), and
    ``config`` for ``kind='model'``; ``sha256`` is strongly recommended.
    """
    missing = [k for k in _REQUIRED if k not in entry]
    if entry.get('kind') == 'model' and not entry.get('config'):
        missing.append('config')
    if missing:
        raise ValueError(f'register_model({name!r}): missing {missing}')
    entry.setdefault('sha256', None)
    MANIFEST[name] = entry


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def _allowed(download: Optional[bool]) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get(ALLOW_DOWNLOAD_ENV, '').strip().lower() in ('1', 'true', 'yes')


def _is_remote(url: str) -> bool:
    return urllib.parse.urlparse(url).scheme in ('http', 'https', 'ftp', 'file')


class ChecksumError(RuntimeError):
    """A file's SHA-256 does not match the zoo entry."""


def _verify(path: str, entry: dict, name: str, allow_unverified: bool) -> str:
    """Check the file's SHA-256 against the entry; returns the hash."""
    digest = sha256_file(path)
    expected = entry.get('sha256')
    prefix = entry.get('sha256_prefix')
    if expected and digest != expected.lower():
        raise ChecksumError(f'{path}: SHA-256 {digest} does not match the zoo entry {name!r} '
                           f'({expected}); the file is corrupt or not the published one. '
                           'Delete it and try again.')
    if prefix and not digest.startswith(prefix.lower()):
        raise ChecksumError(f'{path}: SHA-256 {digest} does not start with {prefix}, the hash '
                           f'prefix in the published file name of {name!r}; the file is '
                           'corrupt or not the published one. Delete it and try again.')
    if not expected and not allow_unverified:
        raise RuntimeError(f'the zoo entry {name!r} records no SHA-256 for {entry["url"]}, so '
                           f'{path} cannot be verified (its SHA-256 is {digest}). Pass '
                           'allow_unverified=True to use it anyway.')
    return digest


def source_path(name: str, download: Optional[bool] = None, allow_unverified: bool = False) -> str:
    """Local path of the entry's published (unconverted) file, verified.

    A plain path as ``url`` is used in place; otherwise the file is looked for in
    ``cache_dir()/downloads`` and downloaded there when allowed.
    """
    entry = get_entry(name)
    url = str(entry['url'])
    if not _is_remote(url):
        path = osp.expanduser(url)
        if not osp.isfile(path):
            raise FileNotFoundError(f'zoo entry {name!r}: weights file {path} does not exist')
        _verify(path, entry, name, allow_unverified)
        return path
    file_name = osp.basename(urllib.parse.urlparse(url).path) or f'{name}.pth'
    path = osp.join(cache_dir(), 'downloads', file_name)
    if not osp.isfile(path):
        if not _allowed(download):
            raise FileNotFoundError(
                f'the weights of {name!r} are not in the cache ({path}) and downloading is not '
                f'allowed. Allow it with download=True (densebox.zoo.get_checkpoint({name!r}, '
                f'download=True)) or {ALLOW_DOWNLOAD_ENV}=1, or put the file from {url} at '
                f'{path} yourself.')
        if not entry.get('sha256') and not allow_unverified:
            raise RuntimeError(f'the zoo entry {name!r} records no SHA-256 for {url}; refusing '
                               'to download a file that cannot be verified. Pass '
                               'allow_unverified=True to download it anyway (the hash prefix '
                               'in its name is still checked).')
        print(f'densebox.zoo: downloading {url} -> {path}')
        os.makedirs(osp.dirname(path), exist_ok=True)
        # torch's downloader streams into a temporary file beside path, checks the SHA-256
        # (prefix) and only then renames it: a corrupt download never reaches the cache
        expected = (entry.get('sha256') or entry.get('sha256_prefix') or '').lower() or None
        try:
            torch.hub.download_url_to_file(url, path, hash_prefix=expected, progress=True)
        except RuntimeError as err:
            if 'invalid hash value' not in str(err):
                raise
            raise ChecksumError(f'{url}: the downloaded file does not match the zoo entry '
                                f'{name!r} ({err}); it was not kept. Try again, or put the '
                                f'published file at {path} yourself.') from None
    digest = _verify(path, entry, name, allow_unverified)  # a file put there by hand is kept
    if not entry.get('sha256'):
        print(f'densebox.zoo: {name!r} used unverified; its SHA-256 is {digest}')
    return path


def get_checkpoint(name: str, download: Optional[bool] = None, allow_unverified: bool = False,
                   force: bool = False) -> str:
    """Path of the converted densebox checkpoint of zoo entry ``name``, made if needed.

    Args:
        name: a zoo name (:func:`list_models`).
        download: allow downloading the published file when it is not cached (None: the
            ``DENSEBOX_ALLOW_DOWNLOAD`` environment variable decides).
        allow_unverified: accept a file whose full SHA-256 the manifest does not record.
        force: convert again even if a converted checkpoint is cached.

    Returns:
        ``cache_dir()/<name>.pth``, a ``{'state_dict', 'meta'}`` checkpoint that
        ``densebox.init_model(name)`` (``kind='model'``) or a backbone ``init_cfg``
        (``kind='backbone'``) loads.
    """
    from densebox.engine.checkpoint import atomic_save_checkpoint, safe_torch_load

    from .converters import get_converter
    entry = get_entry(name)
    out_path = osp.join(cache_dir(), f'{name}.pth')
    if osp.isfile(out_path) and not force:
        return out_path
    if entry.get('archive_member'):  # weights inside a published zip
        src = member_path(name, entry, download=download, allow_unverified=allow_unverified)
    else:
        src = source_path(name, download=download, allow_unverified=allow_unverified)
    checkpoint = safe_torch_load(src, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise RuntimeError(f'{src} holds a {type(checkpoint).__name__}, not a checkpoint dict')

    cfg = None
    if entry.get('config'):
        from densebox.config import load_config
        cfg = load_config(entry['config'], entry.get('cfg_options'))
    converter = get_converter(entry['converter'])
    converted = converter(checkpoint, cfg, **(entry.get('converter_args') or {}))
    if isinstance(converted, dict) and isinstance(converted.get('state_dict'), dict):
        state, extra_meta = converted['state_dict'], dict(converted.get('meta') or {})
    else:
        state, extra_meta = converted, {}

    meta = dict(extra_meta)
    meta['zoo'] = dict(name=name, url=entry['url'], source_sha256=sha256_file(src),
                       converter=entry['converter'])
    if entry['kind'] == 'model':
        meta['dataset_meta'] = _check_and_describe(state, cfg, extra_meta, name)
    atomic_save_checkpoint({'state_dict': state, 'meta': meta}, out_path)
    return out_path


def _check_and_describe(state: dict, cfg, extra_meta: dict, name: str) -> dict:
    """Load the converted weights into the config's model (strict) and return its
    dataset_meta, so a bad conversion never reaches the cache."""
    from densebox.config import dataset_meta_from_config
    from densebox.engine.checkpoint import load_weights
    from mmengine.registry import DefaultScope

    from densebox.registry import MODELS  # imports densebox.models when first searched
    with DefaultScope.overwrite_default_scope('densebox'):
        model = MODELS.build(copy.deepcopy(cfg.model))
    try:
        load_weights(model, {'state_dict': state})
    except RuntimeError as err:
        raise RuntimeError(f'zoo entry {name!r}: the converted weights do not fit '
                           f'{cfg.filename or "its config"}: {err}') from err
    meta = dataset_meta_from_config(cfg)
    given = (extra_meta.get('dataset_meta') or {}).get('classes')
    if given:
        meta['classes'] = tuple(given)
    meta['palette'] = [tuple(int(v) for v in c) for c in meta['palette']]
    return meta


def clear_cache(name: Optional[str] = None) -> None:
    """Remove converted checkpoints (and downloads) of ``name``, or the whole cache."""
    if name is None:
        shutil.rmtree(cache_dir(), ignore_errors=True)
        return
    path = osp.join(cache_dir(), f'{name}.pth')
    if osp.isfile(path):
        os.remove(path)


def extracted_member_path(entry: dict) -> str:
    """Where the member of ``entry``'s archive lives once extracted."""
    return osp.join(cache_dir(), 'downloads', osp.basename(entry['archive_member']))


def member_path(name: str, entry: dict, download: Optional[bool] = None,
                allow_unverified: bool = False) -> str:
    """Local path of the weights file inside the archive of zoo entry ``name``.

    The extracted file is used when it is already in the cache; otherwise the archive is
    found (or downloaded, when allowed) and verified by :func:`densebox.zoo.source_path`,
    and its member extracted.
    """
    dest = extracted_member_path(entry)
    if osp.isfile(dest):
        return dest
    archive = source_path(name, download=download, allow_unverified=allow_unverified)
    from .archives import extract_member
    return extract_member(archive, entry['archive_member'], dest)

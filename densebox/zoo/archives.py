"""Weights published inside a zip archive (FFNet's releases): the member file, extracted once.

The zoo entry names the archive as its ``url`` and the weights inside it as
``archive_member``. The member is extracted into ``cache_dir()/downloads/`` under its own
base name; a user who already unzipped the release can put that file there instead of the
zip. Extraction reads only the named member, writes it through a temporary file and an
atomic rename, and relies on the zip's CRC-32 (checked by :mod:`zipfile` while reading) to
catch a corrupt download.
"""
import os
import os.path as osp
import shutil
import tempfile
import zipfile
from typing import Optional

__all__ = ['extract_member']


def extract_member(archive: str, member: str, dest: str) -> str:
    """Copy ``member`` of the zip ``archive`` to ``dest`` (atomically); returns ``dest``.

    Raises:
        RuntimeError: ``archive`` is not a readable zip, or the member fails its CRC check.
        FileNotFoundError: the archive has no such member (the message lists what it has).
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise RuntimeError(f'{archive} is not a readable zip archive ({err}); delete it and '
                           'download it again') from err
    with zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            names = [n for n in zf.namelist() if not n.endswith('/')]
            raise FileNotFoundError(f'{archive} has no member {member!r}; it holds '
                                    f'{names[:6]}{" ..." if len(names) > 6 else ""}') from None
        os.makedirs(osp.dirname(dest) or '.', exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.extract_', dir=osp.dirname(dest) or '.')
        try:
            with zf.open(info) as src, os.fdopen(fd, 'wb') as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, dest)
        except zipfile.BadZipFile as err:  # CRC mismatch: a corrupt archive
            raise RuntimeError(f'{archive}: member {member!r} is corrupt ({err}); delete the '
                               'archive and download it again') from err
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
    return dest

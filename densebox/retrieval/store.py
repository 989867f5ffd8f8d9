"""An embedding store on disk: float16 rows in chunk files, a JSON manifest, memory-mapped reads.

Layout of a store folder::

    manifest.json             what is stored (below); rewritten atomically after each chunk
    chunk_000000.npy          (rows, dim) float16, a plain .npy file
    chunk_000000.norms.npy    (rows,) float32 L2 norms of those (float16) rows
    chunk_000001.npy ...

``manifest.json``::

    {"format": "densebox.embeddings", "version": 1, "dim": 768, "dtype": "float16",
     "count": 131072, "chunk_rows": 65536, "normalized": true,
     "chunks": [{"file": "chunk_000000.npy", "rows": 65536, "sha256": "..."}, ...],
     "metadata": {...}}

Rows are numbered 0..count-1 in the order they were added; what a row stands for (an image,
a region) is the caller's to record, e.g. in ``metadata`` or a file of its own beside the
store. A chunk counts only once the manifest lists it: it is written to a temporary file,
flushed to disk and renamed, and then the manifest is replaced. A writer killed at any
moment therefore leaves a store holding every row of the chunks it finished, and reopening
it with :class:`EmbeddingWriter` continues after them (``writer.count`` says where); stray
temporary or unlisted files are removed then.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

FORMAT = 'densebox.embeddings'
VERSION = 1
MANIFEST = 'manifest.json'
DTYPES = ('float16', 'float32')
_CHUNK_NAME = re.compile(r'^chunk_(\d{6})(\.norms)?\.npy(\.tmp)?$')

PathLike = Union[str, os.PathLike]


def _chunk_file(index: int) -> str:
    return f'chunk_{index:06d}.npy'


def _norms_file(chunk: str) -> str:
    return chunk[:-len('.npy')] + '.norms.npy'


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npy(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as .npy through ``<path>.tmp`` + fsync + rename; returns the sha256
    of the array's bytes."""
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'wb') as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast('B')).hexdigest()


def read_manifest(path: PathLike) -> Dict[str, Any]:
    """The checked manifest of the store folder ``path`` (errors name the file and field)."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f'{file} does not exist: {path} is not an embedding store '
                                '(make one with densebox.retrieval.EmbeddingWriter)')
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'{file} is not valid JSON: {err}') from err
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise ValueError(f'{file}: "format" must be {FORMAT!r}, got '
                         f'{manifest.get("format") if isinstance(manifest, dict) else manifest!r}')
    if manifest.get('version') != VERSION:
        raise ValueError(f'{file}: version {manifest.get("version")!r} is not supported '
                         f'(this densebox reads version {VERSION})')
    dim = manifest.get('dim')
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f'{file}: "dim" must be a positive int, got {dim!r}')
    if manifest.get('dtype') not in DTYPES:
        raise ValueError(f'{file}: "dtype" must be one of {DTYPES}, got {manifest.get("dtype")!r}')
    chunks = manifest.get('chunks')
    if not isinstance(chunks, list) or not all(
            isinstance(c, dict) and isinstance(c.get('file'), str)
            and isinstance(c.get('rows'), int) and c['rows'] > 0 for c in chunks):
        raise ValueError(f'{file}: "chunks" must be a list of {{"file": str, "rows": int > 0}}')
    total = sum(c['rows'] for c in chunks)
    if manifest.get('count') != total:
        raise ValueError(f'{file}: "count" is {manifest.get("count")!r} but the chunks hold '
                         f'{total} rows')
    return manifest


class EmbeddingWriter:
    """Append embeddings to a store folder, one durable chunk at a time.

    Args:
        path: the store folder (created when missing). An existing store is continued
            (``resume=True``): its ``dim``, ``dtype`` and ``normalized`` must match.
        dim: embedding size; None takes it from an existing store or the first rows added.
        dtype: ``'float16'`` (default) or ``'float32'`` on disk.
        chunk_rows: rows per chunk file (the last one may be shorter).
        normalize: L2-normalise every row (in float32, before the cast to ``dtype``), so
            that inner product is cosine similarity (up to the float16 rounding).
        metadata: JSON-serialisable dict kept in the manifest (merged into an existing one).
        resume: False refuses to open a folder that already holds a store.

    Use as a context manager (``close`` writes the last, partial chunk)::

        with EmbeddingWriter('clip_index', dim=768, normalize=True) as writer:
            for batch in batches[writer.count // batch_size:]:   # skips what is stored
                writer.add(model(batch))

    ``count`` is the number of rows durably stored plus those waiting in the buffer;
    ``stored`` only the former (what a reopened writer starts from).
    """

    def __init__(self, path: PathLike, dim: Optional[int] = None, dtype: str = 'float16',
                 chunk_rows: int = 65536, normalize: bool = False,
                 metadata: Optional[Dict[str, Any]] = None, resume: bool = True):
        if dtype not in DTYPES:
            raise ValueError(f'EmbeddingWriter: dtype must be one of {DTYPES}, got {dtype!r}')
        if int(chunk_rows) < 1:
            raise ValueError(f'EmbeddingWriter: chunk_rows must be >= 1, got {chunk_rows}')
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / MANIFEST).is_file():
            if not resume:
                raise FileExistsError(f'{self.path} already holds an embedding store '
                                      '(pass resume=True to add to it)')
            manifest = read_manifest(self.path)
            for key, value in (('dim', dim), ('dtype', dtype), ('normalized', normalize)):
                if key == 'dim' and value is None:
                    continue
                if manifest.get(key) != value:
                    raise ValueError(f'{self.path / MANIFEST}: the store has {key}='
                                     f'{manifest.get(key)!r}, this writer {value!r}')
            chunk_rows = manifest.get('chunk_rows', chunk_rows)
        else:
            manifest = dict(format=FORMAT, version=VERSION, dim=dim, dtype=dtype, count=0,
                            chunk_rows=int(chunk_rows), normalized=bool(normalize), chunks=[],
                            metadata={})
        if metadata:
            manifest['metadata'] = {**manifest.get('metadata', {}), **metadata}
        self._manifest = manifest
        self.chunk_rows = int(chunk_rows)
        self.normalize = bool(normalize)
        self.dtype = np.dtype(dtype)
        self._buffer: Optional[np.ndarray] = None
        self._filled = 0
        self._closed = False
        self._remove_unlisted_files()
        if manifest['dim'] is not None:
            self._buffer = np.empty((self.chunk_rows, manifest['dim']), self.dtype)
        if not (self.path / MANIFEST).is_file() and manifest['dim'] is not None:
            self._write_manifest()

    # ------------------------------------------------------------------ state
    @property
    def dim(self) -> Optional[int]:
        return self._manifest['dim']

    @property
    def stored(self) -> int:
        """Rows in finished chunks (listed in the manifest)."""
        return self._manifest['count']

    @property
    def count(self) -> int:
        """Rows added so far: stored plus buffered."""
        return self.stored + self._filled

    @property
    def metadata(self) -> Dict[str, Any]:
        return self._manifest['metadata']

    # ------------------------------------------------------------------ writing
    def add(self, embeddings) -> None:
        """Append (N, dim) embeddings (any float array or tensor; N may be 0)."""
        if self._closed:
            raise ValueError(f'EmbeddingWriter({self.path}) is closed')
        rows = _as_float32_rows(embeddings, self.dim, f'EmbeddingWriter({self.path}).add')
        if self.dim is None:
            self._manifest['dim'] = rows.shape[1]
            self._buffer = np.empty((self.chunk_rows, rows.shape[1]), self.dtype)
            self._write_manifest()
        if self.normalize:
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = rows / np.maximum(norms, np.finfo(np.float32).tiny)
        start = 0
        while start < len(rows):
            take = min(len(rows) - start, self.chunk_rows - self._filled)
            self._buffer[self._filled:self._filled + take] = rows[start:start + take]
            self._filled += take
            start += take
            if self._filled == self.chunk_rows:
                self.flush()

    def flush(self) -> None:
        """Write the buffered rows as a chunk now (a partial one if the buffer is not full)."""
        if not self._filled:
            return
        rows = self._buffer[:self._filled]
        index = len(self._manifest['chunks'])
        name = _chunk_file(index)
        digest = _write_npy(self.path / name, rows)
        norms = np.linalg.norm(rows.astype(np.float32), axis=1).astype(np.float32)
        _write_npy(self.path / _norms_file(name), norms)
        self._manifest['chunks'].append(dict(file=name, rows=int(self._filled), sha256=digest))
        self._manifest['count'] += int(self._filled)
        self._filled = 0
        self._write_manifest()

    def close(self) -> None:
        """Write the last chunk and the manifest; the writer cannot be used afterwards."""
        if not self._closed:
            self.flush()
            if self.dim is not None:
                self._write_manifest()
            self._closed = True

    def __enter__(self) -> 'EmbeddingWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception the buffered rows are still complete rows: keep them.
        self.close()

    # ------------------------------------------------------------------ internals
    def _write_manifest(self) -> None:
        self._manifest['updated'] = time.strftime('%Y-%m-%dT%H:%M:%S%z')
        file = self.path / MANIFEST
        tmp = file.with_name(MANIFEST + '.tmp')
        with open(tmp, 'w') as f:
            json.dump(self._manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
        _fsync_dir(self.path)

    def _remove_unlisted_files(self) -> None:
        """Temporary files and chunks the manifest does not list: left by an interrupted
        writer (killed while writing a chunk or before the manifest named it)."""
        listed = {c['file'] for c in self._manifest['chunks']}
        listed |= {_norms_file(f) for f in listed}
        for entry in self.path.iterdir():
            if entry.name == MANIFEST + '.tmp' or (
                    _CHUNK_NAME.match(entry.name) and entry.name not in listed):
                entry.unlink()


def _as_float32_rows(embeddings, dim: Optional[int], where: str) -> np.ndarray:
    if hasattr(embeddings, 'detach'):  # a torch tensor
        embeddings = embeddings.detach().float().cpu().numpy()
    rows = np.asarray(embeddings)
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or (dim is not None and rows.shape[1] != dim):
        raise ValueError(f'{where}: expected (N, {dim if dim is not None else "dim"}) '
                         f'embeddings, got shape {rows.shape}')
    if not np.issubdtype(rows.dtype, np.floating):
        raise TypeError(f'{where}: embeddings must be floating point, got {rows.dtype}')
    rows = rows.astype(np.float32, copy=False)
    if not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(1))[0])
        raise ValueError(f'{where}: row {bad} of this batch is not finite (NaN or Inf)')
    return rows


class EmbeddingStore:
    """A store folder opened for reading: its chunks memory-mapped, nothing loaded.

    Attributes:
        dim, dtype, count (``len(store)``), normalized, metadata, path.

    ``store[i]`` / ``store[a:b]`` / ``store[[i, j]]`` read rows as float32 arrays;
    :meth:`blocks` yields ``(start, rows)`` views of at most ``block_rows`` rows (still
    memory-mapped); :meth:`search` is exact top-k (see :func:`~densebox.retrieval.search`).
    """

    def __init__(self, path: PathLike, verify: bool = False):
        self.path = Path(path)
        manifest = read_manifest(self.path)
        self.manifest = manifest
        self.dim: int = manifest['dim']
        self.dtype = np.dtype(manifest['dtype'])
        self.normalized: bool = bool(manifest.get('normalized', False))
        self.metadata: Dict[str, Any] = manifest.get('metadata') or {}
        self._chunks: List[np.ndarray] = []
        self._norms: List[Optional[np.ndarray]] = []
        self._starts: List[int] = []
        start = 0
        for entry in manifest['chunks']:
            file = self.path / entry['file']
            if not file.is_file():
                raise FileNotFoundError(f'{file}, listed in {self.path / MANIFEST}, is missing')
            rows = np.load(file, mmap_mode='r', allow_pickle=False)
            if rows.shape != (entry['rows'], self.dim) or rows.dtype != self.dtype:
                raise ValueError(f'{file}: holds {rows.dtype} {rows.shape}, the manifest says '
                                 f'{self.dtype} ({entry["rows"]}, {self.dim})')
            norms_file = self.path / _norms_file(entry['file'])
            norms = (np.load(norms_file, mmap_mode='r', allow_pickle=False)
                     if norms_file.is_file() else None)
            if norms is not None and norms.shape != (entry['rows'],):
                raise ValueError(f'{norms_file}: shape {norms.shape}, expected ({entry["rows"]},)')
            self._chunks.append(rows)
            self._norms.append(norms)
            self._starts.append(start)
            start += entry['rows']
        self.count: int = start
        if verify:
            self.verify()

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f'EmbeddingStore({str(self.path)!r}, {self.count} x {self.dim} {self.dtype}, '
                f'{len(self._chunks)} chunks, normalized={self.normalized})')

    def verify(self) -> None:
        """Check every chunk's sha256 against the manifest (reads the whole store)."""
        for entry, rows in zip(self.manifest['chunks'], self._chunks):
            expected = entry.get('sha256')
            if expected is None:
                continue
            got = hashlib.sha256(memoryview(np.ascontiguousarray(rows)).cast('B')).hexdigest()
            if got != expected:
                raise ValueError(f'{self.path / entry["file"]}: sha256 {got} differs from the '
                                 f'manifest\'s {expected} (the file changed or is damaged)')

    def blocks(self, block_rows: int = 65536) -> Iterator[Tuple[int, np.ndarray]]:
        """``(first row, (n, dim) memory-mapped rows)`` for consecutive blocks, n <= block_rows
        (blocks never span two chunks)."""
        for start, rows in zip(self._starts, self._chunks):
            for offset in range(0, len(rows), block_rows):
                yield start + offset, rows[offset:offset + block_rows]

    def norms(self, start: int, stop: int) -> np.ndarray:
        """(stop - start,) float32 L2 norms of rows [start, stop) inside one chunk."""
        k = int(np.searchsorted(self._starts, start, side='right')) - 1
        local = start - self._starts[k]
        if self._norms[k] is not None:
            return np.asarray(self._norms[k][local:local + stop - start])
        rows = self._chunks[k][local:local + stop - start].astype(np.float32)
        return np.linalg.norm(rows, axis=1)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + (self.count if index < 0 else 0)
            if not 0 <= i < self.count:
                raise IndexError(f'row {index} outside a store of {self.count} rows')
            k = int(np.searchsorted(self._starts, i, side='right')) - 1
            return self._chunks[k][i - self._starts[k]].astype(np.float32)
        if isinstance(index, slice):
            index = range(*index.indices(self.count))
        ids = np.asarray(index, np.int64).reshape(-1)
        if ids.size and (ids.min() < -self.count or ids.max() >= self.count):
            raise IndexError(f'rows {ids.min()}..{ids.max()} outside a store of {self.count} rows')
        ids = np.where(ids < 0, ids + self.count, ids)
        out = np.empty((len(ids), self.dim), np.float32)
        chunk_of = np.searchsorted(self._starts, ids, side='right') - 1
        for k in np.unique(chunk_of):
            sel = chunk_of == k
            out[sel] = self._chunks[k][ids[sel] - self._starts[k]]
        return out

    def search(self, queries, k: int = 50, metric: str = 'ip', **kwargs):
        """Exact top-k rows for each query: see :func:`densebox.retrieval.search`."""
        from .search import search
        return search(self, queries, k=k, metric=metric, **kwargs)

"""An embedding store: unit vectors of many items (images), on disk, searched by cosine.

Layout of a store folder::

    manifest.json            {"format": "densebox-embeddings", "version": 1, "dim": D,
                              "meta": {...what made the vectors...},
                              "chunks": [{"file": "chunk_000000.npy", "ids": "chunk_000000.ids.json",
                                          "rows": n, "consumed": m}, ...],
                              "complete": bool}
    chunk_000000.npy         float16 (n, D) rows, L2-normalised before rounding
    chunk_000000.ids.json    the n item ids (e.g. image paths relative to the folder)

``consumed`` counts the inputs a chunk covers, read or skipped (an unreadable image is
consumed without a row), so a writer that is started again resumes after the last input
the manifest records. A chunk file and its ids are written (temporary file + rename) before
the manifest names them, and the manifest itself is replaced atomically: a run killed at any
moment leaves a store that resumes from its last finished chunk.

Readers open every chunk with ``np.load(mmap_mode='r')``; :meth:`EmbeddingStore.search`
computes exact top-k cosine scores block by block, so memory stays bounded by the block size
whatever the store's size.
"""
import json
import os
import os.path as osp
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['EmbeddingStore', 'EmbeddingStoreWriter', 'topk_cosine', 'MANIFEST']

MANIFEST = 'manifest.json'
FORMAT = 'densebox-embeddings'
VERSION = 1


def _atomic_write(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', dir=osp.dirname(path) or '.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _read_manifest(root: str) -> Optional[dict]:
    path = osp.join(root, MANIFEST)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except ValueError as err:
        raise ValueError(f'{path} is not valid JSON ({err}); delete the folder to start again') \
            from err
    if manifest.get('format') != FORMAT or manifest.get('version') != VERSION:
        raise ValueError(f'{path} is not a densebox embedding store manifest (format '
                         f'{manifest.get("format")!r}, version {manifest.get("version")!r})')
    return manifest


def meta_mismatches(stored: dict, expected: dict) -> List[str]:
    """``'key: stored X, expected Y'`` for every key of ``expected`` that ``stored`` differs in."""
    return [f'{k}: stored {stored.get(k)!r}, expected {v!r}' for k, v in expected.items()
            if stored.get(k) != v]


class EmbeddingStoreWriter:
    """Appends unit vectors to a store folder in chunks; resumes an unfinished store.

    A chunk is written once ``chunk_rows`` rows are buffered, at the end of an :meth:`add`
    call, so that every chunk covers whole calls and its ``consumed`` count is exact (a chunk
    can hold up to one call's rows more than ``chunk_rows``).

    Args:
        root: the store folder (created).
        dim: vector length D.
        meta: JSON-able description of what makes the vectors (model, weights digest,
            preprocessing, input list digest ...). A store that exists must have been made
            with the same ``meta`` and ``dim``, otherwise a ``ValueError`` names the keys
            that differ.
        chunk_rows: rows per chunk file.

    ``consumed`` is the number of inputs already covered: a caller feeds the inputs from
    that position on.
    """

    def __init__(self, root: str, dim: int, meta: dict, chunk_rows: int = 65536):
        self.root = root
        self.dim = int(dim)
        self.meta = json.loads(json.dumps(meta))  # what the manifest will hold
        self.chunk_rows = int(chunk_rows)
        if self.chunk_rows < 1:
            raise ValueError(f'chunk_rows must be >= 1, got {chunk_rows}')
        os.makedirs(root, exist_ok=True)
        manifest = _read_manifest(root)
        if manifest is None:
            manifest = dict(format=FORMAT, version=VERSION, dim=self.dim, meta=self.meta,
                            chunks=[], complete=False)
        else:
            diffs = meta_mismatches(manifest.get('meta', {}), self.meta)
            if manifest.get('dim') != self.dim:
                diffs.insert(0, f'dim: stored {manifest.get("dim")}, expected {self.dim}')
            if diffs:
                raise ValueError(f'{osp.join(root, MANIFEST)} was made with other settings; '
                                 f'use another folder or delete it. Differences: '
                                 + '; '.join(diffs))
        self.manifest = manifest
        self._rows: List[np.ndarray] = []
        self._ids: List[str] = []
        self._consumed = 0  # inputs consumed since the last chunk

    @property
    def consumed(self) -> int:
        """Inputs covered by the finished chunks and the buffer."""
        return sum(c['consumed'] for c in self.manifest['chunks']) + self._consumed

    @property
    def rows(self) -> int:
        """Rows in the finished chunks and the buffer."""
        return sum(c['rows'] for c in self.manifest['chunks']) + sum(len(r) for r in self._rows)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get('complete'))

    def add(self, ids: Sequence[str], vectors, consumed: Optional[int] = None) -> None:
        """Buffer rows (and write full chunks).

        Args:
            ids: N item ids.
            vectors: (N, D) array or tensor; rows are L2-normalised here.
            consumed: inputs these rows cover (default N; more when inputs were skipped).
        """
        if isinstance(vectors, torch.Tensor):
            vectors = vectors.detach().float().cpu().numpy()
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim) \
            if np.asarray(vectors).size else np.zeros((0, self.dim), np.float32)
        if len(ids) != len(vectors):
            raise ValueError(f'{len(ids)} ids for {len(vectors)} vectors')
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if len(vectors) and not np.all(np.isfinite(vectors)):
            bad = [ids[i] for i in np.nonzero(~np.isfinite(vectors).all(1))[0][:3]]
            raise ValueError(f'non-finite embeddings for {bad}')
        self._rows.append(vectors / np.maximum(norms, 1e-12))
        self._ids.extend(str(i) for i in ids)
        self._consumed += len(ids) if consumed is None else int(consumed)
        if sum(len(r) for r in self._rows) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        """Write everything buffered as one chunk."""
        take = np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim))
        if len(take) == 0 and self._consumed == 0:
            return
        ids, consumed = self._ids, self._consumed
        index = len(self.manifest['chunks'])
        name = f'chunk_{index:06d}'
        import io
        buf = io.BytesIO()
        np.save(buf, take.astype(np.float16))
        _atomic_write(osp.join(self.root, name + '.npy'), buf.getvalue())
        _atomic_write(osp.join(self.root, name + '.ids.json'), json.dumps(ids).encode())
        self.manifest['chunks'].append(dict(file=name + '.npy', ids=name + '.ids.json',
                                            rows=int(len(take)), consumed=int(consumed)))
        self._write_manifest()
        self._rows, self._ids, self._consumed = [], [], 0

    def _write_manifest(self) -> None:
        _atomic_write(osp.join(self.root, MANIFEST),
                      json.dumps(self.manifest, indent=1).encode())

    def flush(self) -> None:
        """Write the buffered rows as a chunk (resuming starts after them)."""
        self._flush()

    def close(self, complete: bool = True) -> None:
        """Write what is buffered; mark the store complete (readers check it)."""
        self._flush()
        self.manifest['complete'] = bool(complete)
        self._write_manifest()


class EmbeddingStore:
    """A finished store, read memory-mapped.

    Args:
        root: the store folder.
        expected_meta: when given, every key must equal the manifest's ``meta`` (else a
            ``ValueError`` naming the differences).
        allow_incomplete: open a store whose writer has not finished.
    """

    def __init__(self, root: str, expected_meta: Optional[dict] = None,
                 allow_incomplete: bool = False):
        manifest = _read_manifest(root)
        if manifest is None:
            raise FileNotFoundError(f'{osp.join(root, MANIFEST)} not found: {root} is not an '
                                    'embedding store (build one first)')
        if not manifest.get('complete') and not allow_incomplete:
            raise ValueError(f'the store {root} is unfinished (its writer stopped before the '
                             'end); run the same build command again to resume it')
        if expected_meta is not None:
            diffs = meta_mismatches(manifest.get('meta', {}), json.loads(json.dumps(expected_meta)))
            if diffs:
                raise ValueError(f'the store {root} was made with other settings: '
                                 + '; '.join(diffs))
        self.root = root
        self.manifest = manifest
        self.dim = int(manifest['dim'])
        self.meta = manifest.get('meta', {})
        self.chunks: List[np.ndarray] = []
        self.ids: List[str] = []
        for chunk in manifest['chunks']:
            path = osp.join(root, chunk['file'])
            array = np.load(path, mmap_mode='r') if chunk['rows'] else \
                np.zeros((0, self.dim), np.float16)
            if array.shape != (chunk['rows'], self.dim):
                raise ValueError(f'{path} holds an array of shape {array.shape}; the manifest '
                                 f'says ({chunk["rows"]}, {self.dim})')
            with open(osp.join(root, chunk['ids'])) as f:
                ids = json.load(f)
            if len(ids) != chunk['rows']:
                raise ValueError(f'{osp.join(root, chunk["ids"])} lists {len(ids)} ids for '
                                 f'{chunk["rows"]} rows')
            self.chunks.append(array)
            self.ids.extend(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def vectors(self) -> np.ndarray:
        """(N, D) float16 copy of every row (small stores and tests)."""
        if not self.chunks:
            return np.zeros((0, self.dim), np.float16)
        return np.concatenate([np.asarray(c) for c in self.chunks])

    def search(self, queries, k: int, block_rows: int = 65536
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Exact top-k cosine search.

        Args:
            queries: (Q, D) vectors (normalised here).
            k: results per query (at most the store's size).
            block_rows: store rows scored at once.
        Returns:
            scores (Q, k) float32, descending, and indices (Q, k) int64 into :attr:`ids`.
        """
        return topk_cosine(queries, self.chunks, k, block_rows)


def topk_cosine(queries, chunks: Sequence[np.ndarray], k: int, block_rows: int = 65536
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of ``queries @ rows.T`` over row chunks (see :meth:`EmbeddingStore.search`).

    Ties keep the lower index first.
    """
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32) if not isinstance(
        queries, torch.Tensor) else queries.detach().float().cpu())
    if q.dim() == 1:
        q = q[None]
    q = torch.nn.functional.normalize(q, dim=-1)
    total = sum(len(c) for c in chunks)
    if k < 1:
        raise ValueError(f'k must be >= 1, got {k}')
    k = min(int(k), total)
    best_s = torch.full((len(q), 0), float('-inf'))
    best_i = torch.zeros((len(q), 0), dtype=torch.int64)
    offset = 0
    for chunk in chunks:
        for start in range(0, len(chunk), block_rows):
            block = torch.from_numpy(np.asarray(chunk[start:start + block_rows], np.float32))
            scores = q @ block.T
            index = torch.arange(offset + start, offset + start + len(block)).expand(len(q), -1)
            cand_s = torch.cat([best_s, scores], 1)
            cand_i = torch.cat([best_i, index], 1)
            # stable order: sort by index first, then a stable sort by score
            top = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]
            best_s, best_i = cand_s.gather(1, top), cand_i.gather(1, top)
        offset += len(chunk)
    return best_s, best_i

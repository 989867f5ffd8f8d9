"""Exact top-k search over an :class:`~densebox.retrieval.EmbeddingStore` (or an array) in
bounded memory.

Every stored row is scored against every query, in float32 (the float16 rows are
converted exactly): the result is what a brute-force float32 computation gives, up to the
summation order of the dot products (so rows whose scores differ by ~1e-7 may swap).

How: the rows are read block by block from the memory map; a block is converted to
float32 into one reused buffer and multiplied with a batch of queries (``torch.mm``, which
uses the CPU's BLAS); scores are kept for a segment of rows at a time and reduced to the
running top-k. For a few queries the block is small (a few MB, so the float32 copy stays in
the CPU cache and the memory traffic is that of the float16 rows); for many queries it is
large (matrix products work best on big operands). Memory: one float32 block, one
(queries, segment) score buffer (``score_memory`` bytes at most) and the top-k; the store
itself stays in the memory map (the operating system's page cache), never copied whole.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import numpy as np

METRICS = ('ip', 'cosine')


class SearchResult(NamedTuple):
    """``scores`` (Q, k) float32, best first; ``ids`` (Q, k) int64 row numbers (-1 where the
    store has fewer than k rows). Among equal scores the lower row numbers come first (and
    are the ones kept when a tie spans the k-th place)."""
    scores: np.ndarray
    ids: np.ndarray


def _auto_block_rows(num_queries: int, dim: int) -> int:
    if num_queries <= 32:
        return max(256, (4 << 20) // (4 * dim))   # ~4 MB of float32: stays in cache
    return max(4096, (64 << 20) // (4 * dim))     # ~64 MB: large matrix products


def search(store, queries, k: int = 50, metric: str = 'ip', block_rows: Optional[int] = None,
           query_batch: int = 4096, score_memory: int = 256 << 20,
           threads: Optional[int] = None) -> SearchResult:
    """Exact top-k by inner product or cosine similarity.

    Args:
        store: an :class:`~densebox.retrieval.EmbeddingStore`, or an (N, dim) array.
        queries: (Q, dim) or (dim,) float array / tensor.
        k: results per query.
        metric: ``'ip'`` (inner product) or ``'cosine'`` (queries and rows L2-normalised:
            rows by their stored norms).
        block_rows: rows converted and multiplied at a time (default: by query count).
        query_batch: queries scored together.
        score_memory: bytes for the (queries, segment) score buffer.
        threads: torch threads for the products (default: torch's setting).

    Returns:
        :class:`SearchResult` with (Q, k) ``scores`` and ``ids``.
    """
    import torch
    if metric not in METRICS:
        raise ValueError(f'search: metric must be one of {METRICS}, got {metric!r}')
    if int(k) < 1:
        raise ValueError(f'search: k must be >= 1, got {k}')
    dim = store.dim if _is_store(store) else np.asarray(store).shape[-1]
    if hasattr(queries, 'detach'):
        queries = queries.detach().float().cpu().numpy()
    q = np.asarray(queries, np.float32)
    if q.ndim == 1:
        q = q[None]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f'search: queries must be (Q, {dim}), got shape {q.shape}')
    if metric == 'cosine':
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        parts = [_search_batch(store, q[i:i + query_batch], int(k), metric, block_rows,
                               score_memory)
                 for i in range(0, len(q), query_batch)]
    finally:
        torch.set_num_threads(old_threads)
    if not parts:
        return SearchResult(np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))
    return SearchResult(np.concatenate([p[0] for p in parts]),
                        np.concatenate([p[1] for p in parts]))


def _is_store(store) -> bool:
    """An :class:`~densebox.retrieval.store.EmbeddingStore` (anything that reads in blocks
    with its row norms), rather than an array."""
    return hasattr(store, 'blocks') and hasattr(store, 'norms')


def _blocks(store, block_rows: int):
    """(start, float16/32 rows, norms or None) over the store or array."""
    if _is_store(store):
        for start, rows in store.blocks(block_rows):
            yield start, rows, lambda s=start, n=len(rows): store.norms(s, s + n)
    else:
        array = np.asarray(store)
        for start in range(0, len(array), block_rows):
            rows = array[start:start + block_rows]
            yield start, rows, lambda r=rows: np.linalg.norm(r.astype(np.float32), axis=1)


def _as_tensor(rows: np.ndarray):
    import torch
    with warnings.catch_warnings():  # a read-only memory map: torch only reads it here
        warnings.simplefilter('ignore', UserWarning)
        return torch.from_numpy(np.ascontiguousarray(rows))


def _search_batch(store, q: np.ndarray, k: int, metric: str, block_rows: Optional[int],
                  score_memory: int):
    import torch
    num_q, dim = q.shape
    block_rows = int(block_rows or _auto_block_rows(num_q, dim))
    segment_rows = max(block_rows, score_memory // (4 * num_q) // block_rows * block_rows)
    queries = torch.from_numpy(q)
    buffer = torch.empty(block_rows, dim)
    scores = torch.empty(segment_rows, num_q)  # row-major per stored row: each block's
    # product (n, Q) lands contiguously
    best_scores = torch.full((num_q, k), -float('inf'))
    best_ids = torch.full((num_q, k), -1, dtype=torch.int64)
    seg_start, filled = 0, 0

    def reduce_segment():
        nonlocal best_scores, best_ids
        if not filled:
            return
        segment = scores[:filled].t()                     # (Q, filled)
        s, j = _topk_lowest_ids(segment, min(k, filled))
        best_scores, best_ids = _merge(best_scores, best_ids, s, j + seg_start, k)

    for start, rows, norms in _blocks(store, block_rows):
        n = len(rows)
        if start != seg_start + filled or filled + n > segment_rows:
            reduce_segment()
            seg_start, filled = start, 0
        block = buffer[:n]
        block.copy_(_as_tensor(rows))                     # float16 -> float32, exact
        out = scores[filled:filled + n]                   # (n, Q)
        torch.mm(block, queries.t(), out=out)
        if metric == 'cosine':
            out.div_(torch.from_numpy(np.maximum(norms(), np.finfo(np.float32).tiny))[:, None])
        filled += n
    reduce_segment()
    return _order_ties(best_scores.numpy(), best_ids.numpy())


def _topk_lowest_ids(scores, k: int):
    """``topk`` along dim 1 of a (Q, n) tensor that, among entries tied at the k-th score,
    keeps the lowest indices (``torch.topk`` keeps arbitrary ones)."""
    import torch
    s, j = scores.topk(k, dim=1)
    kth = s[:, -1:]
    short = ((scores == kth).sum(1) > (s == kth).sum(1)).nonzero().flatten().tolist()
    for r in short:  # rare: exact ties across the k-th place
        above = s[r] > kth[r]
        tied = (scores[r] == kth[r]).nonzero().flatten()[:k - int(above.sum())]
        j[r] = torch.cat([j[r][above], tied])
        s[r] = torch.cat([s[r][above], kth[r].expand(len(tied))])
    return s, j


def _merge(scores_a, ids_a, scores_b, ids_b, k: int):
    """The best k of two (Q, *) candidate sets, by decreasing score then increasing id."""
    import torch
    scores = torch.cat([scores_a, scores_b], 1)
    ids = torch.cat([ids_a, ids_b], 1)
    order = ids.masked_fill(ids < 0, torch.iinfo(torch.int64).max).argsort(dim=1, stable=True)
    scores, ids = scores.gather(1, order), ids.gather(1, order)
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


def _order_ties(scores: np.ndarray, ids: np.ndarray):
    """Rows sorted by decreasing score, equal scores by increasing id; missing results
    (id -1, score -inf) last."""
    missing = ids < 0
    key_ids = np.where(missing, np.iinfo(np.int64).max, ids)
    order = np.lexsort((key_ids, -scores), axis=1)
    scores = np.take_along_axis(scores, order, 1).astype(np.float32)
    ids = np.take_along_axis(ids, order, 1)
    return scores, ids


def brute_force(rows, queries, k: int, metric: str = 'ip') -> SearchResult:
    """The plain computation (all scores in memory, float64): a test oracle for small sizes."""
    x = np.asarray(rows, np.float64)
    q = np.asarray(queries, np.float64).reshape(-1, x.shape[1])
    scores = q @ x.T
    if metric == 'cosine':
        scores /= np.linalg.norm(q, axis=1, keepdims=True) * np.linalg.norm(x, axis=1)[None]
    order = np.lexsort((np.broadcast_to(np.arange(x.shape[0]), scores.shape), -scores),
                       axis=1)[:, :k]
    return SearchResult(np.take_along_axis(scores, order, 1).astype(np.float32),
                        order.astype(np.int64))


def same_topk(a: SearchResult, b: SearchResult, rtol: float = 1e-5) -> bool:
    """Whether two top-k results agree up to ties: equal scores within ``rtol`` (of the
    largest score magnitude of the row), and equal ids except among rows whose scores are
    within that tolerance of each other or of the k-th score."""
    if a.scores.shape != b.scores.shape:
        return False
    for sa, ia, sb, ib in zip(a.scores, a.ids, b.scores, b.ids):
        tol = rtol * max(float(np.abs(sa).max(initial=0)), float(np.abs(sb).max(initial=0)), 1e-30)
        if not np.allclose(sa, sb, rtol=0, atol=tol):
            return False
        boundary = min(sa[-1], sb[-1]) + tol
        clear_a = {int(i) for i, s in zip(ia, sa) if s > boundary}
        clear_b = {int(i) for i, s in zip(ib, sb) if s > boundary}
        if clear_a != clear_b:
            return False
        # positions with distinct scores must hold the same id
        for pos in range(len(sa)):
            near = np.abs(sa - sa[pos]) <= tol
            if near.sum() == 1 and sa[pos] > boundary and ia[pos] != ib[pos]:
                return False
    return True


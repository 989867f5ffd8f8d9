"""Retrieval speed: densebox's embedding store and exact search against faiss-cpu's
``IndexFlatIP`` on the same simulated embeddings, one run.

Data: ``num_rows`` unit-length 768-d embeddings (Gaussian directions), made chunk by chunk
from a seed (the same numbers in every process) and stored as float16; faiss gets the very
same values as float32 (the float16 numbers converted exactly). Queries: half are noisy
copies of stored rows (clear nearest neighbours), half random directions.

Each side runs in a fresh process (so peak memory is its own), with the same thread count:

* densebox: *build* = :class:`~densebox.retrieval.EmbeddingWriter` writing the store
  (chunk files + manifest, fsync'd), *query* = :meth:`EmbeddingStore.search` on the
  memory-mapped store (the page cache is warm: the files were just written);
* faiss: *build* = ``IndexFlatIP.add`` of the float32 rows (the index holds a float32
  copy of everything in RAM), *query* = ``index.search``.

Generation time is excluded from both builds. Reported: build seconds, the median latency
of single top-``k`` queries, the time per query in a batch, peak RSS (``ru_maxrss``: for
densebox it includes the touched pages of the memory map, which the OS can drop) and peak
anonymous memory (sampled ``RssAnon``: the process's own allocations). The top-``k`` ids of
the batch must be the same (:func:`densebox.retrieval.same_topk`: up to near-ties).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

IMPLS = ('densebox', 'faiss')


def embedding_chunk(index: int, rows: int, dim: int, seed: int) -> np.ndarray:
    """Chunk ``index`` of the simulated store: (rows, dim) float16 unit vectors."""
    rng = np.random.default_rng([seed, index])
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float16)


def chunks(num_rows: int, dim: int, seed: int, chunk_rows: int):
    for index, start in enumerate(range(0, num_rows, chunk_rows)):
        yield embedding_chunk(index, min(chunk_rows, num_rows - start), dim, seed)


def make_queries(num_queries: int, num_rows: int, dim: int, seed: int,
                 chunk_rows: int) -> np.ndarray:
    """(num_queries, dim) float32: noisy copies of rows of the first chunk, then random."""
    rng = np.random.default_rng([seed, 10 ** 6])
    first = embedding_chunk(0, min(chunk_rows, num_rows), dim, seed).astype(np.float32)
    near = first[rng.integers(0, len(first), num_queries // 2)]
    near = near + 0.5 * rng.standard_normal(near.shape).astype(np.float32) / np.sqrt(dim)
    rand = rng.standard_normal((num_queries - len(near), dim)).astype(np.float32)
    q = np.concatenate([near, rand])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


class MemorySampler:
    """Samples the process's ``RssAnon`` (kB, /proc/self/status) every ``interval`` s."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss_anon_kb() -> int:
        try:
            with open('/proc/self/status') as f:
                for line in f:
                    if line.startswith('RssAnon:'):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self.rss_anon_kb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self.rss_anon_kb())


def _set_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    try:
        import faiss
        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def _run_side(impl: str, num_rows: int, dim: int, seed: int, chunk_rows: int, k: int,
              single_queries: int, batch_queries: int, threads: int, store_dir: str) -> dict:
    """One side in its own process: build, query, memory. Returns a JSON-ready dict plus the
    batch's ``ids`` / ``scores`` arrays."""
    _set_threads(threads)
    queries = make_queries(max(single_queries, batch_queries), num_rows, dim, seed, chunk_rows)
    build = 0.0
    with MemorySampler() as mem:
        if impl == 'densebox':
            from densebox.retrieval import EmbeddingStore, EmbeddingWriter
            writer = EmbeddingWriter(store_dir, dim=dim, chunk_rows=chunk_rows, resume=False)
            for rows in chunks(num_rows, dim, seed, chunk_rows):
                start = time.perf_counter()
                writer.add(rows)
                build += time.perf_counter() - start
            start = time.perf_counter()
            writer.close()
            build += time.perf_counter() - start
            store = EmbeddingStore(store_dir)

            def query(q):
                r = store.search(q, k=k)
                return r.scores, r.ids
        else:
            import faiss
            index = faiss.IndexFlatIP(dim)
            for rows in chunks(num_rows, dim, seed, chunk_rows):
                rows = rows.astype(np.float32)
                start = time.perf_counter()
                index.add(rows)
                build += time.perf_counter() - start

            def query(q):
                scores, ids = index.search(q, k)
                return scores, ids.astype(np.int64)
        query(queries[:1])  # warm-up (page cache, allocations)
        single = []
        for i in range(single_queries):
            start = time.perf_counter()
            query(queries[i:i + 1])
            single.append(time.perf_counter() - start)
        start = time.perf_counter()
        scores, ids = query(queries[:batch_queries])
        batch_seconds = time.perf_counter() - start
    return dict(impl=impl, build_s=build, single_query_ms=1000 * statistics.median(single),
                single_query_ms_all=[1000 * s for s in single],
                batch_queries=batch_queries, batch_ms_per_query=1000 * batch_seconds / batch_queries,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                peak_anon_mb=mem.peak_kb / 1024, scores=scores, ids=ids, error=None)


def _memory_available_mb() -> Optional[float]:
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_retrieval_benchmark(sizes: Sequence[int] = (1_000_000, 10_000_000), dim: int = 768,
                            k: int = 50, single_queries: int = 20, batch_queries: int = 256,
                            threads: Optional[int] = None, seed: int = 0,
                            chunk_rows: int = 65536, workdir: Optional[str] = None,
                            impls: Sequence[str] = IMPLS, isolate: bool = True,
                            log: Callable[[str], None] = print) -> dict:
    """Both sides for each size (see the module docstring). faiss is skipped, with the
    reason in ``error``, where it is not installed or its float32 copy would not fit in the
    available memory. ``isolate=False`` runs the sides in this process (for tests: the
    peak memory figures then mix). Returns ``{'env', 'settings', 'results': [...],
    'identical': {size: bool}}``."""
    from densebox.retrieval import SearchResult, same_topk

    from .e2e import environment
    import torch
    threads = int(threads or torch.get_num_threads())
    out = dict(env=environment('cpu'),
               settings=dict(sizes=list(sizes), dim=dim, k=k, single_queries=single_queries,
                             batch_queries=batch_queries, threads=threads, seed=seed,
                             chunk_rows=chunk_rows, isolated=isolate),
               results=[], identical={})
    ctx = multiprocessing.get_context('spawn')
    for size in sizes:
        found: Dict[str, dict] = {}
        for impl in impls:
            error = _cannot_run(impl, size, dim)
            if error is None:
                tmp = tempfile.mkdtemp(prefix='densebox_retrieval_', dir=workdir)
                side = (impl, size, dim, seed, chunk_rows, k, single_queries, batch_queries,
                        threads, str(Path(tmp) / 'store'))
                try:
                    if isolate:
                        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                            found[impl] = pool.submit(_run_side, *side).result()
                    else:
                        old_threads = torch.get_num_threads()
                        try:
                            found[impl] = _run_side(*side)
                        finally:
                            torch.set_num_threads(old_threads)
                except Exception as err:  # e.g. the process was killed for memory
                    error = f'{type(err).__name__}: {err}'
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            entry = found.get(impl) or dict(impl=impl, error=error)
            entry = {key: v for key, v in entry.items() if key not in ('scores', 'ids')}
            entry['rows'] = size
            out['results'].append(entry)
            log(format_retrieval_table([entry], header=False))
        if len(found) == 2:
            a, b = (SearchResult(found[i]['scores'], found[i]['ids']) for i in IMPLS)
            out['identical'][str(size)] = bool(same_topk(a, b))
            log(f'{size} rows: top-{k} ids identical up to ties: {out["identical"][str(size)]}')
    return out


def _cannot_run(impl: str, size: int, dim: int) -> Optional[str]:
    if impl != 'faiss':
        return None
    try:
        import faiss  # noqa: F401
    except ImportError:
        return 'faiss-cpu is not installed (pip install faiss-cpu, or the [bench] extra)'
    need = size * dim * 4 / 2 ** 20 * 1.2
    have = _memory_available_mb()
    if have is not None and need > have:
        return (f'not run: its float32 copy needs about {need / 1024:.1f} GiB, '
                f'{have / 1024:.1f} GiB available')
    return None


def format_retrieval_table(results: Sequence[dict], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(f"{'rows':>11} {'impl':<9}{'build s':>9}{'1 query ms':>12}"
                     f"{'ms/query (batch)':>18}{'peak RSS MB':>13}{'peak anon MB':>14}")
    for r in results:
        if r.get('error'):
            lines.append(f"{r['rows']:>11} {r['impl']:<9}  {r['error']}")
            continue
        lines.append(f"{r['rows']:>11} {r['impl']:<9}{r['build_s']:>9.1f}"
                     f"{r['single_query_ms']:>12.1f}{r['batch_ms_per_query']:>18.2f}"
                     f"{r['peak_rss_mb']:>13.0f}{r['peak_anon_mb']:>14.0f}")
    return '\n'.join(lines)


__all__ = ['embedding_chunk', 'make_queries', 'run_retrieval_benchmark',
           'format_retrieval_table', 'MemorySampler']

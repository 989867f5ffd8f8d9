"""densebox.retrieval: the chunked float16 store (write, resume after a kill, read) and exact
top-k search against a plain float64 brute force (and faiss when installed)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from densebox.retrieval import (EmbeddingStore, EmbeddingWriter, brute_force, read_manifest,
                                same_topk, search)

ROOT = Path(__file__).resolve().parents[1]


def _rows(n, dim=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _queries(rows, n=9, seed=1):
    """Noisy copies of stored rows plus random directions: clear nearest neighbours."""
    rng = np.random.default_rng(seed)
    near = rows[rng.integers(0, len(rows), n // 2)] + 0.3 * rng.standard_normal(
        (n // 2, rows.shape[1]))
    return np.concatenate([near, rng.standard_normal((n - n // 2, rows.shape[1]))]).astype(
        np.float32)


def test_store_round_trip_and_manifest(tmp_path):
    x = _rows(1000)
    with EmbeddingWriter(tmp_path / 'idx', chunk_rows=300, metadata=dict(model='test')) as w:
        w.add(x[:450])
        assert w.stored == 300 and w.count == 450  # one full chunk written, 150 buffered
        w.add(torch.from_numpy(x[450:]))          # tensors are accepted too
    store = EmbeddingStore(tmp_path / 'idx', verify=True)
    assert len(store) == 1000 and store.dim == 32 and store.dtype == np.float16
    manifest = read_manifest(tmp_path / 'idx')
    assert [c['rows'] for c in manifest['chunks']] == [300, 300, 300, 100]
    assert manifest['metadata'] == dict(model='test') and manifest['count'] == 1000
    expected = x.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(store[0:1000], expected)
    np.testing.assert_array_equal(store[[999, 0, 301]], expected[[999, 0, 301]])
    np.testing.assert_array_equal(store[-1], expected[-1])
    starts = [start for start, _ in store.blocks(250)]
    assert starts == [0, 250, 300, 550, 600, 850, 900]  # blocks never span chunks
    with pytest.raises(IndexError, match='1000'):
        store[1000]


def test_normalized_store_rows_have_unit_norm(tmp_path):
    with EmbeddingWriter(tmp_path, normalize=True, chunk_rows=64) as w:
        w.add(_rows(100) * 7)
    store = EmbeddingStore(tmp_path)
    assert store.normalized
    np.testing.assert_allclose(np.linalg.norm(store[:], axis=1), 1, atol=2e-3)  # float16
    np.testing.assert_allclose(store.norms(64, 100), np.linalg.norm(store[64:100], axis=1),
                               rtol=1e-6)


@pytest.mark.parametrize('metric', ['ip', 'cosine'])
@pytest.mark.parametrize('num_queries,block_rows,query_batch', [(1, None, 4096), (9, 100, 4),
                                                                (40, 512, 4096)])
def test_search_equals_brute_force(tmp_path, metric, num_queries, block_rows, query_batch):
    x = _rows(3000, dim=48, seed=2)
    with EmbeddingWriter(tmp_path, chunk_rows=700) as w:
        w.add(x)
    store = EmbeddingStore(tmp_path)
    q = _queries(x, num_queries)
    got = store.search(q, k=25, metric=metric, block_rows=block_rows, query_batch=query_batch,
                       score_memory=64 * 1024)  # small: many segments are merged
    ref = brute_force(x.astype(np.float16), q, 25, metric)  # the stored (float16) values
    assert got.scores.shape == got.ids.shape == (num_queries, 25)
    assert got.scores.dtype == np.float32 and got.ids.dtype == np.int64
    assert same_topk(got, ref)
    assert (got.ids == ref.ids).mean() > 0.99  # near-ties aside, the very same order
    assert np.all(np.diff(got.scores, axis=1) <= 0)


def test_search_small_store_and_plain_arrays():
    x = _rows(10, dim=8)
    got = search(x, x[:3], k=15)
    assert (got.ids[:, 10:] == -1).all() and np.isinf(got.scores[:, 10:]).all()
    ref = brute_force(x, x[:3], 10)
    np.testing.assert_array_equal(got.ids[:, :10], ref.ids)
    with pytest.raises(ValueError, match=r'queries must be \(Q, 8\)'):
        search(x, np.zeros((2, 7)), k=3)
    with pytest.raises(ValueError, match='metric'):
        search(x, x[:1], k=3, metric='l2')


def test_ties_are_ordered_by_row_and_same_topk_sees_differences():
    x = np.ones((6, 4), np.float32)
    got = search(x, np.ones((1, 4)), k=3)
    assert got.ids.tolist() == [[0, 1, 2]]  # equal scores: lowest row numbers first
    a = brute_force(_rows(50, 8), _rows(2, 8, seed=5), 5)
    wrong = a._replace(ids=a.ids.copy())
    wrong.ids[0, 0] = (wrong.ids[0, 0] + 1) % 50
    assert same_topk(a, a) and not same_topk(a, wrong)


_KILLED_WRITER = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    from densebox.retrieval import EmbeddingWriter
    x = np.random.default_rng(0).standard_normal((1000, 32)).astype(np.float32)
    w = EmbeddingWriter(sys.argv[1], chunk_rows=300)
    w.add(x[:750])                      # chunks 0 and 1 written, 150 rows buffered
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_resume_after_the_writer_was_killed(tmp_path):
    path = tmp_path / 'idx'
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, '-c', _KILLED_WRITER, str(path)], env=env)
    assert proc.returncode == -signal.SIGKILL
    # what a kill during the next chunk's write, or before the manifest named it, leaves
    (path / 'chunk_000002.npy.tmp').write_bytes(b'partial')
    np.save(path / 'chunk_000003.npy', np.zeros((5, 32), np.float16))
    assert read_manifest(path)['count'] == 600
    x = _rows(1000)
    with EmbeddingWriter(path) as w:
        assert w.stored == w.count == 600 and w.chunk_rows == 300
        assert not (path / 'chunk_000002.npy.tmp').exists()
        assert not (path / 'chunk_000003.npy').exists()
        w.add(x[w.count:])
    store = EmbeddingStore(path, verify=True)
    np.testing.assert_array_equal(store[:], x.astype(np.float16).astype(np.float32))
    q = _queries(x)
    assert same_topk(store.search(q, k=10), brute_force(x.astype(np.float16), q, 10))


def test_bad_stores_and_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='manifest.json'):
        EmbeddingStore(tmp_path)
    with EmbeddingWriter(tmp_path / 'a', chunk_rows=10) as w:
        w.add(_rows(25, dim=4))
        with pytest.raises(ValueError, match=r'expected \(N, 4\)'):
            w.add(_rows(3, dim=5))
        with pytest.raises(ValueError, match='row 1 of this batch is not finite'):
            w.add(np.array([[0, 0, 0, 0], [np.nan, 0, 0, 0]], np.float32))
    with pytest.raises(ValueError, match='dim=4, this writer 8'):
        EmbeddingWriter(tmp_path / 'a', dim=8)
    with pytest.raises(ValueError, match='normalized=False, this writer True'):
        EmbeddingWriter(tmp_path / 'a', normalize=True)
    with pytest.raises(FileExistsError):
        EmbeddingWriter(tmp_path / 'a', resume=False)
    manifest = json.loads((tmp_path / 'a' / 'manifest.json').read_text())
    (tmp_path / 'a' / 'chunk_000001.npy').unlink()
    with pytest.raises(FileNotFoundError, match='chunk_000001.npy'):
        EmbeddingStore(tmp_path / 'a')
    manifest['count'] = 99
    (tmp_path / 'a' / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match='"count" is 99 but the chunks hold 25'):
        EmbeddingStore(tmp_path / 'a')
    (tmp_path / 'a' / 'manifest.json').write_text('{not json')
    with pytest.raises(ValueError, match='manifest.json is not valid JSON'):
        EmbeddingStore(tmp_path / 'a')


def test_verify_detects_a_changed_chunk(tmp_path):
    with EmbeddingWriter(tmp_path, chunk_rows=10) as w:
        w.add(_rows(20, dim=4))
    rows = np.load(tmp_path / 'chunk_000001.npy')
    rows[3, 2] += 1
    np.save(tmp_path / 'chunk_000001.npy', rows)
    EmbeddingStore(tmp_path)  # opening does not read the data
    with pytest.raises(ValueError, match='chunk_000001.npy: sha256'):
        EmbeddingStore(tmp_path, verify=True)


def test_search_equals_faiss_flat_ip(tmp_path):
    faiss = pytest.importorskip('faiss', reason='faiss-cpu is in the [test] extra')
    x = _rows(5000, dim=64, seed=4)
    with EmbeddingWriter(tmp_path) as w:
        w.add(x)
    stored = EmbeddingStore(tmp_path)[:]
    index = faiss.IndexFlatIP(64)
    index.add(stored)
    q = _queries(x, 20)
    scores, ids = index.search(q, 50)
    got = EmbeddingStore(tmp_path).search(q, k=50)
    assert same_topk(got, got._replace(scores=scores, ids=ids.astype(np.int64)))

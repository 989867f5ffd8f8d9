"""benchmarks/inference_memory.py computes what it says (a tiny run; no memory claims)."""
import importlib.util
import json
import mmap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location('inference_memory',
                                                  ROOT / 'benchmarks' / 'inference_memory.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rss_follows_an_allocation_and_slope_is_least_squares():
    bench = _bench()
    # a fresh anonymous mapping, every page written: resident whatever the allocator holds
    # (a numpy array could reuse freed pages that are already resident)
    block = mmap.mmap(-1, 64 * 2**20)
    before = bench.rss_bytes()
    block.write(b'\1' * len(block))
    grown = bench.rss_bytes() - before
    block.close()
    assert 56 * 2**20 < grown < 80 * 2**20
    calls, rss = [0, 10, 20, 30], [100.0, 120.0, 140.0, 160.0]
    assert bench.slope_per_call(calls, rss) == pytest.approx(2.0)


def test_tiny_run_writes_the_samples(tmp_path, capsys):
    out = tmp_path / 'mem.json'
    result = _bench().main(['--calls', '4', '--warmup', '1', '--every', '2', '--files',
                            '--out', str(out)])
    data = json.loads(out.read_text())
    assert data['calls'] == 4 and data['inputs'] == 8
    assert [s['call'] for s in data['samples']] == [0, 2, 4]
    assert data['growth_mib'] == pytest.approx(
        data['samples'][-1]['rss_mib'] - data['samples'][0]['rss_mib'])
    assert result['rss_end_mib'] > 50  # a process holding torch and a model
    assert 'KiB/call' in capsys.readouterr().out

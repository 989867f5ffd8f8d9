"""Smoke test of ``tools/benchmark.py inference``: one tiny run, JSON shape and sanity only
(no speed assertions: timings on a shared CPU mean nothing here)."""
import importlib.util
import json
from pathlib import Path

import pytest

from densebox.benchmark.e2e import format_table, paired

ROOT = Path(__file__).resolve().parents[1]


def _cli():
    spec = importlib.util.spec_from_file_location('densebox_benchmark_cli',
                                                  ROOT / 'tools' / 'benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inference_smoke_writes_both_entries(tmp_path, capsys):
    out = tmp_path / 'bench' / 'results.json'
    _cli().main(['inference', '--device', 'cpu', '--batch-sizes', '1', '--iters', '1',
                 '--warmup', '0', '--repeats', '1', '--image-size', '120', '160',
                 '--out', str(out)])
    data = json.loads(out.read_text())
    assert data['settings']['batch_sizes'] == [1] and data['settings']['image_hw'] == [120, 160]
    assert data['env']['torch'] and data['env']['densebox_ops_backend'] in ('ext', 'torchvision')
    assert data['settings']['cpu_fast_paths'] is True and 'nnpack' in data['env']
    entries = {e['impl']: e for e in data['results']}
    assert set(entries) == {'densebox', 'torchvision'} and len(data['results']) == 2
    for e in entries.values():
        assert e['error'] is None, e['error']
        assert e['device'] == 'cpu' and e['batch'] == 1 and e['amp'] is False
        assert e['img_per_s'] > 0 and e['seconds_per_batch'] > 0
        assert len(e['img_per_s_repeats']) == 1
        # identical weights, same image: both keep a full list of detections
        assert e['detections_per_image'] == 200
    row, = paired(data['results'])
    assert row['ratio'] == pytest.approx(entries['densebox']['img_per_s']
                                         / entries['torchvision']['img_per_s'])
    printed = capsys.readouterr().out
    assert 'densebox img/s' in printed and 'torchvision img/s' in printed


def test_table_reports_failures_and_ratio():
    results = [dict(impl='densebox', device='cuda', batch=32, amp=True, img_per_s=200.0,
                    error=None),
               dict(impl='torchvision', device='cuda', batch=32, amp=True, img_per_s=None,
                    error='RuntimeError: no kernel')]
    row, = paired(results)
    assert row['ratio'] is None and row['densebox'] == 200.0
    table = format_table(results)
    assert 'n/a' in table and 'torchvision: RuntimeError: no kernel' in table


def test_cli_rejects_bad_arguments():
    cli = _cli()
    with pytest.raises(SystemExit):
        cli.parse_args(['inference', '--batch-sizes', '0'])
    with pytest.raises(SystemExit):
        cli.parse_args(['inference', '--device', 'tpu'])

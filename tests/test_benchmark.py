"""Smoke tests of ``tools/benchmark.py``'s modes: tiny runs, JSON shape and the identity
checks each mode makes (no speed assertions: timings on a shared CPU mean nothing here)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

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


# ------------------------------------------------------------------ the other modes
def test_eval_mode_densebox_equals_pycocotools(tmp_path):
    out = tmp_path / 'eval.json'
    _cli().main(['eval', '--num-images', '40', '--dets-per-image', '30', '--repeats', '1',
                 '--out', str(out)])
    data = json.loads(out.read_text())
    rows = {r['impl']: r for r in data['results']}
    assert set(rows) == {'densebox', 'pycocotools', 'faster_coco_eval'}
    assert all(r['error'] is None and r['seconds'] > 0 for r in rows.values())
    assert data['identical_to_pycocotools'] == {k: True for k in rows}
    assert 0 < rows['pycocotools']['stats'][0] < 1 and len(rows['densebox']['stats']) == 12
    assert data['env']['densebox_coco_backend'] == 'faster_coco_eval'


def test_retrieval_mode_in_process(tmp_path):
    from densebox.benchmark.retrieval import format_retrieval_table, run_retrieval_benchmark
    out = run_retrieval_benchmark(sizes=(3000,), dim=32, k=10, single_queries=2,
                                  batch_queries=8, chunk_rows=1000, workdir=str(tmp_path),
                                  isolate=False, log=lambda line: None)
    rows = {r['impl']: r for r in out['results']}
    assert rows['densebox']['error'] is None and rows['densebox']['build_s'] > 0
    assert rows['densebox']['single_query_ms'] > 0 and rows['densebox']['peak_rss_mb'] > 0
    if rows['faiss']['error'] is None:  # faiss-cpu is in the [test] extra
        assert out['identical'] == {'3000': True}
    assert 'densebox' in format_retrieval_table(out['results'])
    assert not list(tmp_path.iterdir())  # the store is removed afterwards


def test_data_mode_outputs_are_checked(tmp_path):
    from densebox.benchmark.data import check_output, run_data_benchmark
    out = run_data_benchmark(num_items=2, repeats=1, coco_images=3, cityscapes_images=1,
                             workdir=str(tmp_path), log=lambda line: None)
    rows = {(r['pipeline'], r['impl']): r for r in out['results']}
    assert set(rows) == {('ssd300', 'densebox'), ('ssd300', 'torchvision'),
                         ('cityscapes', 'densebox')}
    for row in rows.values():
        assert row['outputs_ok'], row['problem']
        assert row['img_per_s'] > 0
    # the check does catch a wrong output
    bad = dict(inputs=torch.zeros(3, 320, 300, dtype=torch.uint8), data_samples=None)
    assert 'expected (3, 300, 300)' in check_output('ssd300', 'densebox', bad)


@pytest.mark.openvino
def test_deploy_mode_runtimes_give_eager_detections():
    from densebox.benchmark.deploy import format_deploy_table, run_deploy_benchmark
    from test_onnx import _det_model
    out = run_deploy_benchmark(iters=1, warmup=0, repeats=1, image_hw=(90, 120),
                               model=_det_model(50), log=lambda line: None)
    rows = {r['backend']: r for r in out['results']}
    assert rows['torch']['same_detections'] == 1.0
    for name in ('onnxruntime', 'openvino'):
        if rows[name]['error'] is None:
            assert rows[name]['same_detections'] == 1.0 and rows[name]['setup_s'] > 0
    assert rows['onnxruntime']['error'] is None and rows['torch']['detections_per_image'] == 50
    assert rows['auto']['same_detections'] == 1.0
    assert rows['auto']['chosen'] in ('torch', 'onnxruntime', 'openvino')
    assert 'vs torch' in format_deploy_table(out['results'])


def test_matched_fraction_sees_a_different_detection():
    from densebox.apis import DetResult
    from densebox.benchmark.deploy import matched_fraction
    ref = DetResult([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.8], [0, 1], ('a', 'b'),
                    shape=(30, 30))
    assert matched_fraction(ref, ref) == 1.0
    boxes = ref.boxes.copy()
    boxes[0, 3] += 0.01
    moved = DetResult(boxes, ref.scores, ref.labels, ref.class_names, shape=(30, 30))
    assert matched_fraction(moved, ref) == 0.5  # one box moved by 0.01 px > 1e-3


def test_models_mode_ssdlite_and_a_segmenter():
    from densebox.benchmark.models import format_models_table, run_models_benchmark
    out = run_models_benchmark(models=('ssdlite', 'mobile_deeplabv3'), iters=1, warmup=0,
                               repeats=1, image_hw=dict(ssdlite=(90, 120),
                                                        mobile_deeplabv3=(64, 96)),
                               log=lambda line: None)
    rows = {(r['model'], r['impl']): r for r in out['results']}
    assert len(rows) == 4
    for row in rows.values():
        assert row['outputs_ok'], row['problem']
        assert row['img_per_s'] > 0 and row['gflops'] > 0 and row['params'] > 0
    # the densebox segmenter ran at the image's size (its Resize was set to it)
    assert rows[('mobile_deeplabv3', 'densebox')]['network_hw'] == [64, 96]
    assert rows[('ssdlite', 'torchvision')]['network'] == 'ssdlite320_mobilenet_v3_large'
    assert 'GFLOPs' in format_models_table(out['results'])


def test_train_losses_equal_torchvision():
    """The identity check of the train mode: from the same weights, on the same batch,
    densebox's SSD loss is torchvision's (and still after one SGD step)."""
    from densebox.benchmark.train import compare_losses
    check = compare_losses(seed=0, batch=1, cpu_fast_paths=False)
    assert check['equal'], check
    assert check['max_rel_diff'][0] < 1e-5
    first = check['steps'][0]
    assert first['densebox']['loss_cls'] > 0 and first['densebox']['loss_bbox'] > 0


def test_cli_parses_every_mode():
    cli = _cli()
    for argv in (['deploy', '--backends', 'torch', 'openvino'], ['train', '--amp'],
                 ['data', '--pipelines', 'ssd300'], ['eval', '--num-images', '10'],
                 ['retrieval', '--sizes', '1000'], ['inference', '--models', 'ssdlite']):
        assert cli.parse_args(argv).command == argv[0]
    with pytest.raises(SystemExit):
        cli.parse_args(['deploy', '--backends', 'tensorrt'])
    with pytest.raises(SystemExit):
        cli.parse_args(['train', '--iters', '0'])


def test_retrieval_mode_through_the_cli_writes_its_json(tmp_path):
    """The tool passes its arguments to the library by name (a positional log once landed in
    ``isolate`` and the JSON could not be written)."""
    out = tmp_path / 'retrieval.json'
    results = _cli().main(['retrieval', '--sizes', '1500', '--dim', '8', '--k', '5',
                           '--single-queries', '2', '--batch-queries', '3', '--out', str(out)])
    on_disk = json.loads(out.read_text())
    assert on_disk['settings']['isolated'] is True and on_disk['identical'] == {'1500': True}
    assert [r['impl'] for r in results['results']] == ['densebox', 'faiss']

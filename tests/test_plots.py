"""Error analysis and charts: PR curves (their AP equals VOC AP), the detection confusion
matrix on hand-made cases, segmentation PR counts against brute force, the PNGs (written,
non-blank, of the expected size) and plot-logs on synthetic work dirs."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from densebox.evaluation.analysis import (det_confusion_matrix, det_pr_curves,
                                          seg_pr_curves, seg_pr_histograms)
from densebox.evaluation.functional import eval_voc
from densebox.visualization import plots
from densebox.visualization.log_plots import collect_series, default_keys, plot_logs


def _random_set(num_images, num_classes, seed):
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(num_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 100, (n, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 40, (n, 2))], 1)
        labels = rng.integers(0, num_classes, n)
        keep = rng.random(n) < 0.8
        boxes = gt[keep] + rng.normal(0, 3, (keep.sum(), 4))
        extra = int(rng.integers(0, 4))
        exy = rng.uniform(0, 100, (extra, 2))
        boxes = np.concatenate([boxes, np.concatenate([exy, exy + 20], 1)])
        dlabels = np.concatenate([labels[keep], rng.integers(0, num_classes, extra)])
        dets.append(dict(bboxes=boxes, scores=rng.random(len(dlabels)), labels=dlabels))
        gts.append(dict(bboxes=gt, labels=labels, difficult=rng.random(n) < 0.15))
    return dets, gts


@pytest.mark.parametrize('legacy', [False, True])
def test_det_pr_curves_give_the_voc_area_ap(legacy):
    dets, gts = _random_set(40, 4, seed=3)
    curves = det_pr_curves(dets, gts, 4, iou_thr=0.5, legacy_coordinate=legacy)
    reference = eval_voc(dets, gts, 4, 0.5, mode='area', legacy_coordinate=legacy)
    np.testing.assert_allclose([c['ap'] for c in curves], reference['ap'][0], atol=1e-12)
    for c, final in zip(curves, reference['recall'][0]):
        assert np.all(np.diff(c['recall']) >= 0) and c['recall'][-1] == pytest.approx(final)
        assert np.all(np.diff(c['scores']) <= 0)  # ranked by score


def test_det_confusion_matrix_counts_hand_made_cases():
    gts = [dict(bboxes=np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                                 [60, 60, 70, 70]], float),
                labels=np.array([0, 1, 1, 0]), difficult=np.array([False, False, False, True]))]
    dets = [dict(bboxes=np.array([[0, 0, 10, 10],      # right class
                                  [20, 20, 30, 31],    # gt 1 predicted as 0
                                  [0, 1, 10, 10],      # a duplicate of the first: false alarm
                                  [80, 80, 90, 90],    # nothing there: false alarm
                                  [60, 60, 70, 70],    # on an ignored box: not counted
                                  [40, 40, 50, 50]], float),  # below the score threshold
                 scores=np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1]),
                 labels=np.array([0, 0, 0, 1, 1, 1]))]
    m = det_confusion_matrix(dets, gts, num_classes=2, score_thr=0.3, iou_thr=0.5)
    expected = np.array([[1, 0, 0],    # gt 0: found
                         [1, 0, 1],    # gt 1: one called class 0, one missed
                         [1, 1, 0]])   # background: false alarms of class 0 and 1
    np.testing.assert_array_equal(m, expected)


def test_seg_pr_counts_equal_brute_force():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 20, 30, generator=g).softmax(0)
    gt = torch.randint(0, 3, (20, 30), generator=g)
    gt[:4] = 255
    hist = seg_pr_histograms(probs, gt, num_bins=10)
    valid = (gt != 255).numpy()
    p, y = probs.numpy(), gt.numpy()
    for c in range(3):
        bins = np.minimum((p[c][valid] * 10).astype(int), 9)
        np.testing.assert_array_equal(hist[0, c].numpy(), np.bincount(bins, minlength=10))
        np.testing.assert_array_equal(hist[1, c].numpy(),
                                      np.bincount(bins[y[valid] == c], minlength=10))
    curves = seg_pr_curves(hist.numpy())
    for c, curve in enumerate(curves):
        for t_index, t in enumerate(curve['thresholds']):  # falling thresholds b / 10
            called = np.minimum((p[c] * 10).astype(int), 9) >= round(t * 10)
            tp = (called & (y == c) & valid).sum()
            assert curve['recall'][t_index] == pytest.approx(tp / ((y == c) & valid).sum())
            if (called & valid).sum():
                assert curve['precision'][t_index] == pytest.approx(tp / (called & valid).sum())


def _png_ok(path, size):
    img = np.asarray(Image.open(path).convert('RGB'))
    assert (img.shape[1], img.shape[0]) == size, path
    assert img.std() > 10 and (img < 128).any()  # drawn on, not blank
    return img


def test_charts_are_written_at_their_size_and_not_blank(tmp_path):
    rng = np.random.default_rng(0)
    names = [f'class {i}' for i in range(5)]
    curves = [dict(recall=np.sort(rng.random(30)), precision=rng.random(30), ap=0.4,
                   num_gts=5) for _ in names]
    dpi = plots.DPI
    _png_ok(plots.plot_pr_curves(curves, names, str(tmp_path / 'pr.png'))[0], (9 * dpi, 6 * dpi))
    grid = plots.plot_pr_grid(curves, names, str(tmp_path / 'grid.png'))[0]
    _png_ok(grid, (round(2.3 * 3 * dpi), round(2.1 * 2 * dpi)))  # 3 x 2 panels for 5
    matrix = rng.integers(0, 20, (6, 6))
    _png_ok(plots.plot_confusion_matrix(matrix, names + ['background'],
                                        str(tmp_path / 'cm.png'))[0], (6 * dpi, 5 * dpi))
    many = [f'c{i}' for i in range(40)]  # the overview names no class then, only the mean
    img = _png_ok(plots.plot_pr_curves(curves * 8, many, str(tmp_path / 'pr40.png'))[0],
                  (7 * dpi, 6 * dpi))
    with pytest.raises(ValueError, match='matrix'):
        plots.plot_confusion_matrix(matrix, names, str(tmp_path / 'bad.png'))
    # the class colours come from the data set's palette
    palette = [(200, 30, 30), (30, 160, 30), (30, 30, 200), (120, 120, 0), (0, 120, 120)]
    img = np.asarray(Image.open(plots.plot_pr_grid(
        curves, names, str(tmp_path / 'pal.png'), palette=palette)[0]).convert('RGB')).astype(int)
    assert (np.abs(img - np.array(palette[0])).sum(-1) < 40).sum() > 50


def _write_run(folder, stamp, records):
    path = folder / stamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    path.write_text('\n'.join(json.dumps(r) for r in records) + '\n')


def test_plot_logs_overlays_runs_and_follows_a_resume(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    train = [dict(lr=0.01, loss=2.0 / it, loss_cls=1.0 / it, time=0.1, epoch=1, iter=it,
                  step=it) for it in range(10, 110, 10)]
    _write_run(a, '20260101_000000', train[:6] + [{'coco/bbox_mAP': 0.1, 'step': 1}])
    # resumed from iteration 50: it repeats 60 with another value, then goes on
    _write_run(a, '20260102_000000', [dict(train[5], loss=9.0)] + train[6:] +
               [{'coco/bbox_mAP': 0.2, 'step': 2}])
    _write_run(b, '20260103_000000', train + [{'coco/bbox_mAP': 0.3, 'step': 2}])
    from densebox.visualization.log_plots import load_scalars
    series = collect_series(load_scalars(str(a)))
    x, y, label = series['loss']
    assert x.tolist() == list(range(10, 110, 10)) and label == 'iteration'
    assert y[x.tolist().index(60)] == 9.0  # the later record of a repeated step wins
    assert series['coco/bbox_mAP'][0].tolist() == [1, 2]
    assert default_keys(series) == ['loss', 'loss_cls', 'lr', 'coco/bbox_mAP']
    out = plot_logs([str(a), str(b)], str(tmp_path / 'curves.png'), legend=['a', 'b'])
    img = np.asarray(Image.open(out).convert('RGB'))
    # 4 keys: 3 columns x 2 rows, plus room for the legend of two runs
    assert (img.shape[1], img.shape[0]) == (round((4.6 * 3 + 1.8) * plots.DPI),
                                            round(3.3 * 2 * plots.DPI))
    assert img.std() > 10
    with pytest.raises(KeyError, match=r"\['nope'\] are in none of the runs"):
        plot_logs([str(a)], str(tmp_path / 'x.png'), keys=['nope'])
    with pytest.raises(FileNotFoundError, match='no <timestamp>/vis_data/scalars.json'):
        plot_logs([str(tmp_path)], str(tmp_path / 'x.png'))

    from densebox.cli_support import run
    assert run(['plot-logs', str(b), '--keys', 'loss', '--out', str(tmp_path / 'one.png')]) == 0
    assert osp.getsize(tmp_path / 'one.png') > 1000

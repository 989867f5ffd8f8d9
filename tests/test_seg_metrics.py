"""IoUMetric against plain numpy references and against the official Cityscapes evaluation."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from PIL import Image

from densebox.datasets.cityscapes import CITYSCAPES_CLASSES
from densebox.evaluation.cityscapes_metric import CityscapesMetric, train_id_to_label_id_lut
from densebox.evaluation.iou_metric import IoUMetric, confusion_histogram
from densebox.structures import SegDataSample


def pixel_counts(pairs, num_classes, ignore_index=255):
    """Per class, with one boolean mask per class (no histogram): true positives, false
    negatives and false positives over the non-ignored pixels; and the correct / total
    pixel counts."""
    tp, fn, fp = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    correct = total = 0
    for pred, gt in pairs:
        valid = gt != ignore_index
        for c in range(num_classes):
            tp[c] += np.sum((pred == c) & (gt == c) & valid)
            fn[c] += np.sum((pred != c) & (gt == c) & valid)
            fp[c] += np.sum((pred == c) & (gt != c) & valid)
        correct += np.sum((pred == gt) & valid)
        total += np.sum(valid)
    return tp, fn, fp, correct, total


def numpy_reference(pairs, num_classes, ignore_index=255):
    """Per-class IoU / Acc and aAcc."""
    tp, fn, fp, correct, total = pixel_counts(pairs, num_classes, ignore_index)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = tp / (tp + fn + fp)
        acc = tp / (tp + fn)
    return iou, acc, correct / total


def numpy_dice_fscore(pairs, num_classes, beta, ignore_index=255):
    """Per-class Dice 2TP / (2TP + FN + FP), precision TP / (TP + FP), recall TP / (TP + FN)
    and F-beta (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP) (van Rijsbergen's effectiveness;
    sklearn's fbeta_score): each NaN only where its denominator is 0."""
    tp, fn, fp, _, _ = pixel_counts(pairs, num_classes, ignore_index)
    b2 = beta ** 2
    with np.errstate(invalid='ignore', divide='ignore'):
        return dict(Dice=2 * tp / (2 * tp + fn + fp), Precision=tp / (tp + fp),
                    Recall=tp / (tp + fn), Fscore=(1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp))


def make_sample(pred, gt, **meta):
    sample = SegDataSample(metainfo=meta)
    sample.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    sample.gt_sem_seg = PixelData(data=torch.as_tensor(gt)[None])
    return sample


def random_pairs(rng, num_classes, shapes, absent=()):
    """Correlated (pred, gt) int64 maps; classes in ``absent`` appear in neither."""
    keep = np.array([c for c in range(num_classes) if c not in absent])
    pairs = []
    for shape in shapes:
        gt = rng.choice(keep, size=shape)
        gt[rng.random(shape) < 0.1] = 255
        pred = np.where(rng.random(shape) < 0.6, gt, rng.choice(keep, size=shape))
        pred[pred == 255] = keep[0]
        pairs.append((pred.astype(np.int64), gt.astype(np.int64)))
    return pairs


def test_confusion_histogram_matches_histogram2d():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, (40, 50))
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 6, (40, 50))
    hist = confusion_histogram(torch.from_numpy(pred), torch.from_numpy(gt), 6).numpy()
    valid = gt != 255
    ref, _, _ = np.histogram2d(gt[valid], pred[valid], bins=6, range=[[0, 6], [0, 6]])
    np.testing.assert_array_equal(hist, ref.astype(np.int64))
    assert hist.sum() == valid.sum()


def test_confusion_histogram_rejects_bad_labels():
    pred = torch.zeros(4, 4, dtype=torch.int64)
    gt = torch.zeros(4, 4, dtype=torch.int64)
    gt[0, 0] = 7                                   # not a class, not ignore_index
    with pytest.raises(ValueError, match='outside'):
        confusion_histogram(pred, gt, 5)
    with pytest.raises(ValueError, match='shape'):
        confusion_histogram(pred, gt[:2], 5)


@pytest.mark.parametrize('nan_to_num', [None, 0.0])
def test_iou_metric_matches_numpy_reference(nan_to_num):
    num_classes = 7
    rng = np.random.default_rng(1)
    # class 5 is absent from ground truth and prediction: NaN, skipped unless nan_to_num.
    pairs = random_pairs(rng, num_classes, [(30, 40), (25, 33), (16, 16)], absent=(5, 6))
    # class 6 is predicted but never in the ground truth: IoU 0 (counted), Acc NaN.
    pairs[0][0][0, :10] = 6
    metric = IoUMetric(iou_metrics=['mIoU', 'mDice'], nan_to_num=nan_to_num)
    evaluator = Evaluator(metric)
    evaluator.dataset_meta = dict(classes=tuple(f'c{i}' for i in range(num_classes)))
    # two batches, through mmengine's Evaluator (which hands the metric plain dicts)
    evaluator.process([make_sample(*p) for p in pairs[:2]])
    evaluator.process([make_sample(*pairs[2])])
    res = evaluator.evaluate(3)

    iou, acc, aacc = numpy_reference(pairs, num_classes)
    assert np.isnan(iou[5]) and iou[6] == 0 and np.isnan(acc[6])
    if nan_to_num is not None:
        iou, acc = np.nan_to_num(iou, nan=nan_to_num), np.nan_to_num(acc, nan=nan_to_num)
    assert res['aAcc'] == pytest.approx(aacc * 100)
    assert res['mIoU'] == pytest.approx(np.nanmean(iou) * 100)
    assert res['mAcc'] == pytest.approx(np.nanmean(acc) * 100)
    dice = numpy_dice_fscore(pairs, num_classes, beta=1.0)['Dice']
    if nan_to_num is not None:
        dice = np.nan_to_num(dice, nan=nan_to_num)
    assert res['mDice'] == pytest.approx(np.nanmean(dice) * 100)
    assert set(res) == {'aAcc', 'mIoU', 'mAcc', 'mDice'}


@pytest.mark.parametrize('beta', [1.0, 0.5, 2.0])
def test_iou_metric_dice_and_fscore_match_numpy_reference(beta):
    """Among 8 classes: 6 is only predicted, 5 only in the ground truth, 4 in both but never
    where predicted, 7 in neither. The first three count as 0 in Dice and F-score (they
    were attempted and missed); only 7 is undefined and skipped."""
    num_classes = 8
    rng = np.random.default_rng(4)
    pairs = random_pairs(rng, num_classes, [(30, 40), (24, 36)], absent=(4, 5, 6, 7))
    pairs[0][0][:3, :] = 6                               # predicted, never in gt
    pairs[0][1][5:8, :] = 5                              # in gt, never predicted there
    pairs[0][0][5:8, :] = 0
    pairs[1][1][:4, :5], pairs[1][0][:4, :5] = 4, 1      # gt 4 here,
    pairs[1][0][10:12, 10:14] = 4                        # predicted 4 elsewhere only
    pairs[1][1][10:12, 10:14] = 2
    metric = IoUMetric(iou_metrics=['mIoU', 'mDice', 'mFscore'], beta=beta)
    metric.dataset_meta = dict(classes=tuple(f'c{i}' for i in range(num_classes)))
    metric.process({}, [make_sample(*p).to_dict() for p in pairs])
    res = metric.evaluate(len(pairs))

    ref = numpy_dice_fscore(pairs, num_classes, beta)
    assert [ref['Fscore'][c] for c in (4, 5, 6)] == [0, 0, 0] and np.isnan(ref['Fscore'][7])
    assert np.isnan(ref['Precision'][5]) and np.isnan(ref['Recall'][6])
    for name in ('Dice', 'Precision', 'Recall', 'Fscore'):
        assert res['m' + name] == pytest.approx(np.nanmean(ref[name]) * 100, rel=1e-12), name
    if beta == 1.0:  # F1 is the Dice coefficient
        assert res['mFscore'] == pytest.approx(res['mDice'], rel=1e-12)
    iou, acc, aacc = numpy_reference(pairs, num_classes)
    assert res['mIoU'] == pytest.approx(np.nanmean(iou) * 100)
    assert set(res) == {'aAcc', 'mIoU', 'mAcc', 'mDice', 'mFscore', 'mPrecision', 'mRecall'}


def test_iou_metric_perfect_and_error_messages():
    metric = IoUMetric()
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    gt = torch.tensor([[0, 1], [2, 255]])
    metric.process({}, [make_sample(gt.clamp(max=2), gt).to_dict()])
    res = metric.evaluate(1)
    assert res == {'aAcc': 100.0, 'mIoU': 100.0, 'mAcc': 100.0}
    with pytest.raises(ValueError, match=r'x.png.*ground truth \[\], prediction \[3\]'):
        metric.process({}, [make_sample(gt.clamp(max=2) + 1, gt, img_path='x.png').to_dict()])
    with pytest.raises(ValueError, match='classes'):
        IoUMetric().process({}, [make_sample(gt, gt).to_dict()])


# ---------------------------------------------------------------- Cityscapes, official code
def label_id_to_train_id(label_ids):
    from cityscapesscripts.helpers.labels import labels
    lut = np.full(256, 255, dtype=np.uint8)
    for label in labels:
        if label.id >= 0:
            lut[label.id] = label.trainId if 0 <= label.trainId < 255 else 255
    return lut[label_ids]


def write_fake_cityscapes(root, rng, split='val', size=(64, 128)):
    """gtFine/leftImg8bit files of 3 images in 2 cities, named as cityscapesscripts expects.

    Ground truth uses every label id 0..33 except 'bus' (28) and 'train' (31); the
    predictions below contain 'bus' (IoU 0 in both evaluators) but no 'train' (NaN, skipped).
    """
    ids = np.array([i for i in range(34) if i not in (28, 31)])
    out = []
    for k, (city, seq, frame) in enumerate([('aachen', 0, 19), ('aachen', 1, 42),
                                            ('bonn', 5, 7)]):
        stem = f'{city}_{seq:06d}_{frame:06d}'
        img_dir = osp.join(root, 'leftImg8bit', split, city)
        gt_dir = osp.join(root, 'gtFine', split, city)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(gt_dir, exist_ok=True)
        label_ids = rng.choice(ids, size=size).astype(np.uint8)
        # blocks, so that crops and resizes see regions rather than noise
        label_ids = np.kron(label_ids[::8, ::8], np.ones((8, 8), np.uint8))
        train_ids = label_id_to_train_id(label_ids)
        instance_ids = label_ids.astype(np.uint16)      # 16-bit png, as in gtFine
        instance_ids[label_ids == 26] = 26000 + k          # one car instance per image
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(
            osp.join(img_dir, stem + '_leftImg8bit.png'))
        Image.fromarray(label_ids).save(osp.join(gt_dir, stem + '_gtFine_labelIds.png'))
        Image.fromarray(train_ids).save(osp.join(gt_dir, stem + '_gtFine_labelTrainIds.png'))
        Image.fromarray(instance_ids).save(osp.join(gt_dir, stem + '_gtFine_instanceIds.png'))
        out.append((osp.join(img_dir, stem + '_leftImg8bit.png'),
                    osp.join(gt_dir, stem + '_gtFine_labelTrainIds.png'), train_ids))
    return out


def cityscapes_samples(files, rng):
    samples = []
    for img_path, seg_path, train_ids in files:
        pred = np.where(rng.random(train_ids.shape) < 0.5, train_ids,
                        rng.integers(0, 19, train_ids.shape))
        pred[pred == 255] = 0
        pred[pred == 16] = 14            # 'train': absent from gt and prediction -> NaN
        assert (pred == 15).any() and not (train_ids == 15).any()   # 'bus' only predicted
        samples.append(make_sample(pred.astype(np.int64), train_ids.astype(np.int64),
                                   img_path=img_path, seg_map_path=seg_path))
    return samples


def test_train_id_lut():
    lut = train_id_to_label_id_lut()
    assert lut[0] == 7 and lut[13] == 26 and lut[18] == 33 and lut[19] == 255


def test_iou_metric_equals_official_cityscapes_evaluation(tmp_path):
    rng = np.random.default_rng(2)
    files = write_fake_cityscapes(str(tmp_path / 'cityscapes'), rng)
    out_dir = str(tmp_path / 'preds')
    evaluator = Evaluator([IoUMetric(),
                           CityscapesMetric(output_dir=out_dir, eval_inst_level=True)])
    evaluator.dataset_meta = dict(classes=CITYSCAPES_CLASSES)
    samples = cityscapes_samples(files, rng)
    evaluator.process(samples[:2])
    evaluator.process(samples[2:])
    res = evaluator.evaluate(len(samples))
    assert res['mIoU'] == pytest.approx(res['cityscapes/mIoU'], abs=1e-9)
    assert 5 < res['mIoU'] < 95
    assert 0 < res['cityscapes/mIoU_category'] <= 100
    assert np.isfinite(res['cityscapes/nIoU'])
    # predictions were written as <city>_<seq>_<frame>_leftImg8bit.png and removed after
    assert os.listdir(out_dir) == []


def test_cityscapes_metric_keeps_label_id_pngs_and_checks_gt(tmp_path):
    rng = np.random.default_rng(3)
    files = write_fake_cityscapes(str(tmp_path / 'cs'), rng)
    samples = [s.to_dict() for s in cityscapes_samples(files, rng)]
    metric = CityscapesMetric(output_dir=str(tmp_path / 'out'), keep_results=True)
    metric.dataset_meta = dict(classes=CITYSCAPES_CLASSES)
    metric.process({}, samples)
    res = metric.evaluate(len(samples))
    assert set(res) == {'cityscapes/mIoU', 'cityscapes/mIoU_category'}
    kept = sorted(os.listdir(tmp_path / 'out'))
    assert kept == sorted(osp.basename(f[0]) for f in files)
    written = np.array(Image.open(tmp_path / 'out' / kept[0]))
    pred = samples[0]['pred_sem_seg']['data'][0].numpy()
    np.testing.assert_array_equal(written, train_id_to_label_id_lut()[pred])

    os.remove(files[1][1].replace('labelTrainIds', 'labelIds'))
    metric.process({}, samples)
    with pytest.raises(FileNotFoundError, match='aachen_000001_000042_gtFine_labelIds.png'):
        metric.evaluate(len(samples))


# ------------------------------------------- Cityscapes nIoU and categories, official script
INSTANCE_LABEL_IDS = (24, 25, 26, 27, 33)  # person, rider, car, truck, bicycle


def write_instances_cityscapes(root, rng, size=(64, 96)):
    """gtFine val files of 3 images: blocky stuff labels and 4-6 rectangles of instance
    classes per image, each its own instance (id = label * 1000 + k, as in gtFine), of
    varied sizes so that the instance weighting matters. Returns (img_path, train-id
    ground truth path, label ids) per image."""
    from cityscapesscripts.helpers.labels import id2label
    # road, sidewalk, building, pole, vegetation, sky, unlabeled
    stuff = np.array([7, 8, 11, 17, 21, 23, 0])
    train_lut = np.full(256, 255, np.uint8)
    for label_id, label in id2label.items():
        if label_id >= 0 and 0 <= label.trainId < 255:
            train_lut[label_id] = label.trainId
    out = []
    for city, seq, frame in [('aachen', 3, 19), ('bonn', 4, 19), ('bonn', 5, 21)]:
        stem = f'{city}_{seq:06d}_{frame:06d}'
        label_ids = np.kron(rng.choice(stuff, (size[0] // 16, size[1] // 16)),
                            np.ones((16, 16), np.int64))
        instance_ids = label_ids.copy()
        for k in range(int(rng.integers(4, 7))):
            label = int(rng.choice(INSTANCE_LABEL_IDS))
            h, w = int(rng.integers(4, 30)), int(rng.integers(4, 40))
            y, x = int(rng.integers(0, size[0] - h)), int(rng.integers(0, size[1] - w))
            label_ids[y:y + h, x:x + w] = label
            instance_ids[y:y + h, x:x + w] = label * 1000 + k
        gt_dir = osp.join(root, 'gtFine', 'val', city)
        img_dir = osp.join(root, 'leftImg8bit', 'val', city)
        os.makedirs(gt_dir, exist_ok=True)
        os.makedirs(img_dir, exist_ok=True)
        img_path = osp.join(img_dir, stem + '_leftImg8bit.png')
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(img_path)
        Image.fromarray(label_ids.astype(np.uint8)).save(
            osp.join(gt_dir, stem + '_gtFine_labelIds.png'))
        Image.fromarray(instance_ids.astype(np.uint16)).save(
            osp.join(gt_dir, stem + '_gtFine_instanceIds.png'))
        train_path = osp.join(gt_dir, stem + '_gtFine_labelTrainIds.png')
        Image.fromarray(train_lut[label_ids]).save(train_path)
        out.append((img_path, train_path, label_ids))
    return out


def official_cityscapes_scores(root, pred_dir, export_dir):
    """The cityscapesscripts evaluation as its README runs it (csEvalPixelLevelSemantic:
    CITYSCAPES_DATASET / CITYSCAPES_RESULTS, every gtFine/val image), in a fresh process,
    and the JSON it exports. numpy 2.4 dropped np.in1d, which the script calls."""
    import json
    import subprocess
    import sys
    code = ('import numpy as np, runpy\n'
            'if not hasattr(np, "in1d"):\n'
            '    np.in1d = lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel()\n'
            'runpy.run_module("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",'
            ' run_name="__main__")\n')
    os.makedirs(export_dir, exist_ok=True)
    env = dict(os.environ, CITYSCAPES_DATASET=root, CITYSCAPES_RESULTS=pred_dir,
               CITYSCAPES_EXPORT_DIR=export_dir)
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with open(osp.join(export_dir, 'resultPixelLevelSemanticLabeling.json')) as f:
        return json.load(f)


def test_cityscapes_niou_and_categories_equal_the_official_script(tmp_path):
    from cityscapesscripts.helpers.labels import trainId2label
    rng = np.random.default_rng(5)
    root = str(tmp_path / 'cityscapes')
    files = write_instances_cityscapes(root, rng)
    samples, oracle_dir = [], tmp_path / 'oracle_preds'
    oracle_dir.mkdir()
    for img_path, train_path, label_ids in files:
        gt = np.asarray(Image.open(train_path)).astype(np.int64)
        pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 19, gt.shape))
        pred[pred == 255] = 8   # (vegetation)
        pred[10:20, :] = 13     # a band of 'car' over everything: instance FP and FN
        samples.append(make_sample(pred, gt, img_path=img_path, seg_map_path=train_path))
        # the oracle's own label-id png of the same prediction
        label_ids_pred = np.vectorize(lambda t: trainId2label[t].id)(pred).astype(np.uint8)
        stem = osp.basename(img_path)[:-len('_leftImg8bit.png')]
        Image.fromarray(label_ids_pred).save(oracle_dir / f'{stem}_prediction.png')
    metric = CityscapesMetric(output_dir=str(tmp_path / 'preds'), eval_inst_level=True)
    metric.dataset_meta = dict(classes=CITYSCAPES_CLASSES)
    metric.process({}, [s.to_dict() for s in samples])
    ours = metric.evaluate(len(samples))

    official = official_cityscapes_scores(root, str(oracle_dir), str(tmp_path / 'export'))
    expected = {'cityscapes/mIoU': official['averageScoreClasses'],
                'cityscapes/mIoU_category': official['averageScoreCategories'],
                'cityscapes/nIoU': official['averageScoreInstClasses'],
                'cityscapes/nIoU_category': official['averageScoreInstCategories']}
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value * 100, rel=1e-12, abs=1e-12), key
    # the instance weighting changes the numbers here: nIoU is not mIoU over the same classes
    inst = [trainId2label[t].name for t in (11, 12, 13, 14, 18)]
    plain = np.nanmean([official['classScores'][n] for n in inst])
    niou = np.nanmean([official['classInstScores'][n] for n in inst])
    assert abs(plain - niou) > 0.01
    assert 10 < ours['cityscapes/nIoU'] < 90 and 10 < ours['cityscapes/mIoU_category'] < 95

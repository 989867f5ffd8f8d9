"""Cityscapes pixel-level evaluation with the official cityscapesscripts code.

``process`` writes each prediction, converted from train ids (0..18) to Cityscapes label
ids, as ``<output_dir>/<city>_<seq>_<frame>_leftImg8bit.png`` (the name of its input image;
the official evaluator matches ``<city>_<seq>_<frame>*.png``). ``compute_metrics`` pairs the
predictions with the ``gtFine/.../*_gtFine_labelIds.png`` files of the evaluated images and
runs ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling.evaluateImgLists``.

Only the evaluated images are scored (an ``indices`` subset works). With several processes,
``output_dir`` must be on a file system that every process sees.
"""
import contextlib
import copy
import io
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from PIL import Image

from densebox.registry import METRICS

from .iou_metric import format_table

TRAIN_ID_SUFFIX = '_gtFine_labelTrainIds.png'
LABEL_ID_SUFFIX = '_gtFine_labelIds.png'


def train_id_to_label_id_lut() -> np.ndarray:
    """(256,) uint8 lookup table: train id -> Cityscapes label id; 255 for unused entries."""
    from cityscapesscripts.helpers.labels import labels
    lut = np.full(256, 255, dtype=np.uint8)
    for label in labels:
        if 0 <= label.trainId < 255:
            lut[label.trainId] = label.id
    return lut


def gt_label_ids_path(sample: dict) -> str:
    """Path of the ``*_gtFine_labelIds.png`` of a sample, from its mask or image path.

    ``.../gtFine/val/x/x_1_2_gtFine_labelTrainIds.png`` -> ``..._gtFine_labelIds.png``;
    without 'seg_map_path', ``.../leftImg8bit/val/x/x_1_2_leftImg8bit.png`` ->
    ``.../gtFine/val/x/x_1_2_gtFine_labelIds.png``.
    """
    seg_map_path = sample.get('seg_map_path')
    if seg_map_path and seg_map_path.endswith(TRAIN_ID_SUFFIX):
        return seg_map_path[:-len(TRAIN_ID_SUFFIX)] + LABEL_ID_SUFFIX
    img_path = sample.get('img_path', '')
    head, name = osp.split(img_path)
    if not name.endswith('_leftImg8bit.png'):
        raise ValueError(f'CityscapesMetric: cannot find the gtFine labelIds file of sample '
                         f'img_path={img_path!r} seg_map_path={seg_map_path!r}')
    city_dir, city = osp.split(head)
    split_dir, split = osp.split(city_dir)
    root = osp.dirname(split_dir)
    return osp.join(root, 'gtFine', split, city,
                    name[:-len('_leftImg8bit.png')] + LABEL_ID_SUFFIX)


@contextlib.contextmanager
def _numpy_in1d():
    """Provide ``np.in1d`` (removed in numpy 2.4) while cityscapesscripts' code runs."""
    if hasattr(np, 'in1d'):
        yield
        return
    np.in1d = lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel()
    try:
        yield
    finally:
        del np.in1d


@METRICS.register_module()
class CityscapesMetric(BaseMetric):
    """The official Cityscapes IoU (19 classes, and the 7 categories).

    Args:
        output_dir: folder for the label-id prediction pngs (created if missing).
        keep_results: keep the pngs after evaluation (e.g. to submit them); otherwise the
            files this metric wrote are deleted.
        eval_inst_level: also compute the instance-weighted iIoU ('nIoU' keys); needs the
            ``*_gtFine_instanceIds.png`` files.
        collect_device, prefix: as mmengine's BaseMetric; keys are 'cityscapes/mIoU', ...

    Samples: ``sample['pred_sem_seg']['data']`` (1, H, W) train ids at the original size,
    and 'img_path' (and 'seg_map_path' when present) in the metainfo.
    Returns percentages: mIoU (the class average, "IoU class"), mIoU_category, and with
    ``eval_inst_level`` nIoU, nIoU_category.
    """

    default_prefix: Optional[str] = 'cityscapes'

    def __init__(self, output_dir: str, keep_results: bool = False,
                 eval_inst_level: bool = False, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.output_dir = output_dir
        self.keep_results = keep_results
        self.eval_inst_level = eval_inst_level
        self._lut = train_id_to_label_id_lut()
        os.makedirs(output_dir, exist_ok=True)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Write each prediction as a label-id png and remember its ground-truth file."""
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze(0).cpu().numpy()
            img_path = sample['img_path']
            if pred.min() < 0 or pred.max() > 18:
                raise ValueError(f'CityscapesMetric: {img_path}: predictions must be train '
                                 f'ids 0..18, got values in [{pred.min()}, {pred.max()}]')
            name = osp.splitext(osp.basename(img_path))[0] + '.png'
            out_file = osp.join(self.output_dir, name)
            Image.fromarray(self._lut[pred.astype(np.int64)]).save(out_file)
            self.results.append((out_file, gt_label_ids_path(sample)))

    def compute_metrics(self, results: List[Tuple[str, str]]) -> Dict[str, float]:
        """Run the official evaluation over the written predictions."""
        import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cs_eval

        written = [r[0] for r in results]
        try:
            gt_files = [r[1] for r in results]
            self._check_files(gt_files)
            args = copy.copy(cs_eval.args)
            args.predictionPath = osp.abspath(self.output_dir)
            args.predictionWalk = None
            args.evalInstLevelScore = self.eval_inst_level
            args.evalPixelAccuracy = False   # per-image statistics only; not reported here
            args.JSONOutput = False
            args.quiet = True
            args.colorized = False
            args.bold = args.nocol = ''
            log = io.StringIO()
            try:
                with contextlib.redirect_stdout(log), _numpy_in1d():
                    pred_files = [cs_eval.getPrediction(args, gt) for gt in gt_files]
                    scores = cs_eval.evaluateImgLists(pred_files, gt_files, args)
            except SystemExit:   # cityscapesscripts' printError() exits
                raise RuntimeError('CityscapesMetric: the cityscapesscripts evaluation failed:'
                                   f'\n{log.getvalue().strip()}') from None
        finally:
            if not self.keep_results:
                for f in set(written):
                    if osp.isfile(f):
                        os.remove(f)
        self._log_table(scores)
        out = {'mIoU': scores['averageScoreClasses'] * 100,
               'mIoU_category': scores['averageScoreCategories'] * 100}
        if self.eval_inst_level:
            out['nIoU'] = scores['averageScoreInstClasses'] * 100
            out['nIoU_category'] = scores['averageScoreInstCategories'] * 100
        return out

    def _check_files(self, gt_files: List[str]) -> None:
        suffixes = [LABEL_ID_SUFFIX] + (['_gtFine_instanceIds.png'] if self.eval_inst_level
                                        else [])
        for gt in gt_files:
            for suffix in suffixes:
                path = gt[:-len(LABEL_ID_SUFFIX)] + suffix
                if not osp.isfile(path):
                    raise FileNotFoundError(
                        f'CityscapesMetric: ground truth {path!r} is missing. The official '
                        f'evaluation reads the *{suffix} files that come in '
                        'gtFine_trainvaltest.zip; see data/README.md.')

    def _log_table(self, scores: dict) -> None:
        from cityscapesscripts.helpers.labels import labels
        rows = [[label.name, f"{scores['classScores'][label.name] * 100:.2f}"]
                for label in labels if not label.ignoreInEval]
        MMLogger.get_current_instance().info(
            'Cityscapes (official evaluation) per-class IoU:\n' +
            format_table(['Class', 'IoU'], rows))

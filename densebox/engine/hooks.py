"""Hooks of the test loop: drawing predictions beside the ground truth
(``tools/test.py --show-dir``) and a progress bar."""
import os.path as osp
import sys
import warnings
from typing import Optional, Sequence

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from densebox.registry import HOOKS


@HOOKS.register_module()
class DrawPredictionsHook(Hook):
    """Draw each test image into ``out_dir``: ground truth and prediction side by side when
    the sample carries its ground truth (the test pipelines load it), the prediction alone
    otherwise.

    ``out_dir`` is taken relative to the run's log folder unless it is absolute.
    """

    def __init__(self, out_dir: str, score_thr: float = 0.3, interval: int = 1,
                 with_gt: bool = True):
        self.out_dir = out_dir
        self.score_thr = score_thr
        self.interval = interval
        self.with_gt = with_gt
        self._warned = False

    def _ground_truth(self, sample, img, classes, palette) -> Optional[np.ndarray]:
        from densebox.visualization import draw_det, draw_seg
        if 'gt_instances' in sample:
            gt = sample.gt_instances
            drawn = draw_det(img, gt.bboxes.cpu().numpy(), gt.labels.cpu().numpy(),
                             class_names=classes, palette=palette)
            if 'ignored_instances' in sample and len(sample.ignored_instances):
                ign = sample.ignored_instances
                drawn = draw_det(drawn, ign.bboxes.cpu().numpy(), ign.labels.cpu().numpy(),
                                 class_names=[f'{c} (ignored)' for c in classes],
                                 palette=palette)
            return drawn
        if 'gt_sem_seg' in sample:
            seg = sample.gt_sem_seg.data[0].cpu().numpy().astype(np.int64)
            if seg.shape != img.shape[:2]:
                if not self._warned:
                    warnings.warn(f'DrawPredictionsHook: ground truth {seg.shape} is not at the '
                                  f'image size {img.shape[:2]}; drawing predictions only')
                    self._warned = True
                return None
            return draw_seg(img, seg, class_names=classes, palette=palette, legend='inside')
        return None

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        if outputs is None or batch_idx % self.interval:
            return
        from densebox.datasets.transforms.loading import decode_rgb, read_bytes
        from densebox.visualization import draw_det, draw_seg, save_image, side_by_side
        out_dir = self.out_dir if osp.isabs(self.out_dir) else osp.join(runner.log_dir, self.out_dir)
        meta = runner.test_dataloader.dataset.metainfo
        classes = meta.get('classes', ())
        palette = meta.get('palette')
        for sample in outputs:
            img = decode_rgb(read_bytes(sample.img_path), sample.img_path,
                             sample.metainfo.get('ori_shape'))
            if 'pred_instances' in sample:
                pred = sample.pred_instances
                drawn = draw_det(img, pred.bboxes.cpu().numpy(), pred.labels.cpu().numpy(),
                                 pred.scores.cpu().numpy(), class_names=classes, palette=palette,
                                 score_thr=self.score_thr)
            else:
                seg = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
                drawn = draw_seg(img, seg, class_names=classes, palette=palette,
                                 legend='inside')
            gt = self._ground_truth(sample, img, classes, palette) if self.with_gt else None
            if gt is not None:
                drawn = side_by_side([gt, drawn], ['ground truth', 'prediction'])
            save_image(osp.join(out_dir, osp.basename(sample.img_path)), drawn)


@HOOKS.register_module()
class TestProgressBarHook(Hook):
    """A progress bar over the test batches (on the main process, to stderr), with the rate
    and the time left, as training logs its ETA. ``tools/test.py`` adds it unless
    ``--no-progress``."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._bar = None

    def before_test_epoch(self, runner) -> None:
        if not is_main_process():
            return
        from tqdm import tqdm
        try:
            total = len(runner.test_dataloader)
        except TypeError:
            total = None
        self._bar = tqdm(total=total, desc='test', unit='batch', file=sys.stderr,
                         dynamic_ncols=True)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def after_test_epoch(self, runner, metrics=None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

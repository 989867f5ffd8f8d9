"""Hooks: drawing test predictions (``tools/test.py --show-dir``)."""
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmengine.hooks import Hook

from densebox.registry import HOOKS


@HOOKS.register_module()
class DrawPredictionsHook(Hook):
    """Draw each test image with its predicted boxes or mask into ``out_dir``.

    ``out_dir`` is taken relative to the run's log folder unless it is absolute.
    """

    def __init__(self, out_dir: str, score_thr: float = 0.3, interval: int = 1):
        self.out_dir = out_dir
        self.score_thr = score_thr
        self.interval = interval

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        if outputs is None or batch_idx % self.interval:
            return
        from densebox.datasets.transforms.loading import decode_rgb, read_bytes
        from densebox.visualization import draw_det, draw_seg, save_image
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
                drawn = draw_seg(img, seg, class_names=classes, palette=palette)
            save_image(osp.join(out_dir, osp.basename(sample.img_path)), drawn)

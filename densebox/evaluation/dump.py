"""Write every prediction of a test run to a JSON file (``tools/test.py --out``)."""
import json
import os
import os.path as osp
from typing import Sequence

from mmengine.evaluator import BaseMetric

from densebox.registry import METRICS


def _to_list(value):
    return value.detach().cpu().tolist() if hasattr(value, 'detach') else value


@METRICS.register_module()
class DumpPredictions(BaseMetric):
    """Collect the predictions of each image and write them as JSON.

    Detection entries: ``{img_id, img_path, ori_shape, bboxes (xyxy), scores, labels}``;
    segmentation entries: ``{img_id, img_path, ori_shape, sem_seg}`` with the label map as
    nested lists (prefer ``--show-dir`` for large maps). JSON rather than pickle so that
    reading the file back never runs code.
    """

    def __init__(self, out_file: str, collect_device: str = 'cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not out_file.endswith('.json'):
            raise ValueError(f'--out {out_file}: predictions are written as JSON, '
                             'give a path ending in .json')
        self.out_file = out_file

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            entry = {k: _to_list(sample.get(k)) for k in ('img_id', 'img_path', 'ori_shape')}
            if 'pred_instances' in sample:
                pred = sample['pred_instances']
                entry.update(bboxes=_to_list(pred['bboxes']), scores=_to_list(pred['scores']),
                             labels=_to_list(pred['labels']))
            if 'pred_sem_seg' in sample:
                entry['sem_seg'] = _to_list(sample['pred_sem_seg']['data'][0])
            self.results.append(entry)

    def compute_metrics(self, results: list) -> dict:
        folder = osp.dirname(osp.abspath(self.out_file))
        os.makedirs(folder, exist_ok=True)
        tmp = self.out_file + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(dict(classes=list((self.dataset_meta or {}).get('classes', ())),
                           predictions=results), f)
        os.replace(tmp, self.out_file)
        return {}

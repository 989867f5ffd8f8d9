"""Test-time augmentation models: run each augmented copy, merge the predictions.

Configured as in MMDetection / MMSegmentation, next to a ``tta_pipeline`` that makes the
copies (:class:`densebox.datasets.transforms.TestTimeAug`)::

    tta_model = dict(type='DetTTAModel',
                     tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.45), max_per_img=200))
    tta_model = dict(type='SegTTAModel')

``tools/test.py CONFIG CKPT --tta`` (``densebox test ... --tta``) swaps them in:
``tta_model.module = model``, ``model = tta_model`` and the test data set's pipeline becomes
``tta_pipeline``. The checkpoint of the plain model loads as it is (mmengine loads into
``module``).

The wrapped model predicts each copy as it would a plain image, so its predictions are
already in original-image pixels; what is left is undoing the flips of the detections (the
segmentor undoes its own flips) and merging:

- detections: the boxes of all copies, flipped back, go through one class-aware NMS and the
  ``max_per_img`` best are kept;
- segmentation: the class probabilities (softmax of ``seg_logits``) of all copies are
  averaged and the arg-max is the label map.
"""
from typing import List, Optional

import torch
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from densebox.registry import MODELS

__all__ = ['DetTTAModel', 'SegTTAModel', 'flip_boxes']


def flip_boxes(boxes: Tensor, direction: Optional[str], height: int, width: int) -> Tensor:
    """Mirror (N, 4) xyxy boxes of an (height, width) image: 'horizontal', 'vertical',
    'diagonal' (both) or None (unchanged)."""
    if not direction:
        return boxes
    out = boxes.clone()
    if direction in ('horizontal', 'diagonal'):
        out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    if direction in ('vertical', 'diagonal'):
        out[:, 1], out[:, 3] = height - boxes[:, 3], height - boxes[:, 1]
    if direction not in ('horizontal', 'vertical', 'diagonal'):
        raise ValueError(f"flip_boxes: direction must be 'horizontal', 'vertical' or "
                         f"'diagonal', got {direction!r}")
    return out


@MODELS.register_module()
class DetTTAModel(BaseTTAModel):
    """Merge the detections of the augmented copies of each image.

    Args:
        module: the detector (config or model).
        tta_cfg: ``dict(nms=dict(iou_threshold=...), max_per_img=...)``; the IoU threshold
            defaults to the detector's ``test_cfg.nms_iou_thr`` and ``max_per_img`` to its
            ``test_cfg.max_per_img``.
        data_preprocessor: optional, replaces the module's (mmengine's rule).
    """

    def __init__(self, module, tta_cfg: Optional[dict] = None, data_preprocessor=None):
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        self.tta_cfg = dict(tta_cfg or {})
        test_cfg = getattr(getattr(self.module, 'bbox_head', None), 'test_cfg', None) or {}
        nms = dict(self.tta_cfg.get('nms') or {})
        if nms.get('type', 'nms') != 'nms':
            raise ValueError(f"DetTTAModel: tta_cfg.nms.type must be 'nms', got {nms['type']!r}")
        self.iou_threshold = float(nms.get('iou_threshold', test_cfg.get('nms_iou_thr', 0.5)))
        self.max_per_img = int(self.tta_cfg.get('max_per_img', test_cfg.get('max_per_img', 100)))

    def merge_preds(self, data_samples_list: List[list]) -> list:
        """``data_samples_list[i]``: the A predicted samples of image i -> one sample each,
        with the metainfo of the first copy (set unflipped) and the merged
        ``pred_instances``."""
        return [self._merge_one(samples) for samples in data_samples_list]

    def _merge_one(self, samples: list):
        from densebox.ops import batched_nms
        boxes, scores, labels = [], [], []
        for sample in samples:
            pred = sample.pred_instances
            height, width = sample.metainfo['ori_shape'][:2]
            direction = sample.metainfo.get('flip_direction') if sample.metainfo.get('flip') else None
            boxes.append(flip_boxes(pred.bboxes, direction, height, width))
            scores.append(pred.scores)
            labels.append(pred.labels)
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        keep = batched_nms(boxes.float(), scores.float(), labels, self.iou_threshold)
        keep = keep[:self.max_per_img]  # batched_nms returns them by decreasing score
        merged = samples[0]
        merged.set_metainfo(dict(flip=False, flip_direction=None))
        merged.pred_instances = InstanceData(bboxes=boxes[keep], scores=scores[keep],
                                             labels=labels[keep])
        return merged


@MODELS.register_module()
class SegTTAModel(BaseTTAModel):
    """Average the class probabilities of the augmented copies of each image.

    The segmentor returns ``seg_logits`` (C, H, W) at the original size with its flip
    undone, so copies of any scale line up pixel for pixel. The merged sample holds the
    averaged probabilities as ``seg_logits`` and their arg-max as ``pred_sem_seg``.
    """

    def merge_preds(self, data_samples_list: List[list]) -> list:
        merged = []
        for samples in data_samples_list:
            probs = torch.stack([s.seg_logits.data.float().softmax(0) for s in samples]).mean(0)
            out = samples[0]
            out.set_metainfo(dict(flip=False, flip_direction=None))
            out.seg_logits = PixelData(data=probs)
            out.pred_sem_seg = PixelData(data=probs.argmax(0, keepdim=True))
            merged.append(out)
        return merged

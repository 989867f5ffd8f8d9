"""Data samples: what travels with one image through the pipeline, the model and the metric.

A ``DetDataSample`` holds
  - ``gt_instances``: ``InstanceData`` with ``bboxes`` (N, 4) float32 xyxy pixels of the
    network input and ``labels`` (N,) int64, 0-based;
  - ``ignored_instances``: the same for boxes marked ``difficult`` / ``iscrowd``;
  - ``pred_instances``: ``bboxes`` (K, 4) xyxy in *original image* pixels, ``scores`` (K,),
    ``labels`` (K,);
and metainfo: ``img_path``, ``img_id``, ``ori_shape`` (h, w), ``img_shape`` (h, w) after
resizing, ``pad_shape``, ``scale_factor`` (w_scale, h_scale), ``flip``.

A ``SegDataSample`` holds ``gt_sem_seg`` / ``pred_sem_seg`` (``PixelData`` with ``data`` of
shape (1, H, W), int64 class indices, 255 = ignore) and ``seg_logits`` (C, H, W).
"""
from mmengine.structures import BaseDataElement, InstanceData, PixelData


class DetDataSample(BaseDataElement):
    """Detection sample: ground truth, ignored ground truth and predictions of one image."""

    @property
    def gt_instances(self) -> InstanceData:
        return self._gt_instances

    @gt_instances.setter
    def gt_instances(self, value: InstanceData):
        self.set_field(value, '_gt_instances', dtype=InstanceData)

    @gt_instances.deleter
    def gt_instances(self):
        del self._gt_instances

    @property
    def ignored_instances(self) -> InstanceData:
        return self._ignored_instances

    @ignored_instances.setter
    def ignored_instances(self, value: InstanceData):
        self.set_field(value, '_ignored_instances', dtype=InstanceData)

    @ignored_instances.deleter
    def ignored_instances(self):
        del self._ignored_instances

    @property
    def pred_instances(self) -> InstanceData:
        return self._pred_instances

    @pred_instances.setter
    def pred_instances(self, value: InstanceData):
        self.set_field(value, '_pred_instances', dtype=InstanceData)

    @pred_instances.deleter
    def pred_instances(self):
        del self._pred_instances


class SegDataSample(BaseDataElement):
    """Segmentation sample: ground-truth map, predicted map and logits of one image."""

    @property
    def gt_sem_seg(self) -> PixelData:
        return self._gt_sem_seg

    @gt_sem_seg.setter
    def gt_sem_seg(self, value: PixelData):
        self.set_field(value, '_gt_sem_seg', dtype=PixelData)

    @gt_sem_seg.deleter
    def gt_sem_seg(self):
        del self._gt_sem_seg

    @property
    def pred_sem_seg(self) -> PixelData:
        return self._pred_sem_seg

    @pred_sem_seg.setter
    def pred_sem_seg(self, value: PixelData):
        self.set_field(value, '_pred_sem_seg', dtype=PixelData)

    @pred_sem_seg.deleter
    def pred_sem_seg(self):
        del self._pred_sem_seg

    @property
    def seg_logits(self) -> PixelData:
        return self._seg_logits

    @seg_logits.setter
    def seg_logits(self, value: PixelData):
        self.set_field(value, '_seg_logits', dtype=PixelData)

    @seg_logits.deleter
    def seg_logits(self):
        del self._seg_logits

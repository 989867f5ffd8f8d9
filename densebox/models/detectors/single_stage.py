"""Single-stage detector: backbone -> neck -> dense head."""
from typing import Dict, List, Optional, Sequence, Union

from mmengine.model import BaseModel
from torch import Tensor

from densebox.registry import MODELS


@MODELS.register_module()
class SingleStageDetector(BaseModel):
    """SSD, SSDLite and any detector that predicts boxes densely from feature maps.

    ``forward(inputs, data_samples, mode)`` with ``inputs`` (B, 3, H, W) normalised images:
      - ``'loss'``: dict of scalar losses;
      - ``'predict'``: the data samples with ``pred_instances`` in original-image pixels;
      - ``'tensor'``: the raw head outputs (class logits (B, A, C+1), box deltas (B, A, 4)).
    """

    def __init__(self, backbone: dict, bbox_head: dict, neck: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.bbox_head = MODELS.build(dict(bbox_head, train_cfg=train_cfg, test_cfg=test_cfg))

    def extract_feat(self, inputs: Tensor) -> Sequence[Tensor]:
        feats = self.backbone(inputs)
        return self.neck(feats) if self.neck is not None else feats

    def forward(self, inputs: Tensor, data_samples: Optional[List] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], List, tuple]:
        if mode == 'loss':
            return self.bbox_head.loss(self.extract_feat(inputs), data_samples)
        if mode == 'predict':
            results = self.bbox_head.predict(self.extract_feat(inputs), data_samples)
            for sample, pred in zip(data_samples, results):
                sample.pred_instances = pred
            return data_samples
        if mode == 'tensor':
            return self.bbox_head(self.extract_feat(inputs))
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

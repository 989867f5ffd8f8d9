"""Weight converters from other projects' checkpoints to densebox checkpoints."""
from .iformer import convert_iformer_checkpoint, convert_official_iformer
from .mmdet_ssd import (anchor_permutation, convert_mmdet_ssd, convert_mmdet_ssd_checkpoint,
                        mmdet_ssd_anchor_sizes)
from .renaming import CheckpointMismatchError
from .sgformer import convert_official_sgformer, convert_sgformer_checkpoint
from .torchvision_seg import (convert_torchvision_backbone_checkpoint,
                              convert_torchvision_mobilenet_v2, convert_torchvision_resnet)
from .torchvision_ssd import (COCO_CATEGORY_IDS, TORCHVISION_NUM_LOGITS,
                              convert_torchvision_ssd300, torchvision_label_map)

__all__ = ['anchor_permutation', 'convert_mmdet_ssd', 'convert_mmdet_ssd_checkpoint',
           'mmdet_ssd_anchor_sizes', 'convert_torchvision_backbone_checkpoint',
           'convert_torchvision_mobilenet_v2', 'convert_torchvision_resnet', 'COCO_CATEGORY_IDS',
           'TORCHVISION_NUM_LOGITS', 'convert_torchvision_ssd300', 'torchvision_label_map',
           'CheckpointMismatchError', 'convert_official_iformer', 'convert_iformer_checkpoint',
           'convert_official_sgformer', 'convert_sgformer_checkpoint']

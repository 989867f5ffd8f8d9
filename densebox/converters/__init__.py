"""Weight converters from other projects' checkpoints to densebox checkpoints."""
from .denseclip import (convert_denseclip_checkpoint, convert_denseclip_state_dict,
                        denseclip_config_for)
from .ffnet import convert_ffnet_imagenet
from .iformer import convert_iformer_checkpoint, convert_official_iformer
from .mmdet_ssd import (anchor_permutation, convert_mmdet_ssd, convert_mmdet_ssd_checkpoint,
                        mmdet_ssd_anchor_sizes)
from .renaming import CheckpointMismatchError
from .sgformer import convert_official_sgformer, convert_sgformer_checkpoint
from .torchvision_seg import (convert_torchvision_backbone_checkpoint,
                              convert_torchvision_mobilenet_v2, convert_torchvision_resnet)
from .torchvision_ssd import (COCO_CATEGORY_IDS, TORCHVISION_NUM_LOGITS,
                              convert_torchvision_ssd300, torchvision_label_map)
from .vgg16_reducedfc import convert_vgg16_reducedfc

__all__ = ['COCO_CATEGORY_IDS', 'TORCHVISION_NUM_LOGITS', 'CheckpointMismatchError',
           'anchor_permutation', 'convert_denseclip_checkpoint', 'convert_denseclip_state_dict',
           'convert_ffnet_imagenet', 'convert_iformer_checkpoint', 'convert_mmdet_ssd',
           'convert_mmdet_ssd_checkpoint', 'convert_official_iformer', 'convert_official_sgformer',
           'convert_sgformer_checkpoint', 'convert_torchvision_backbone_checkpoint',
           'convert_torchvision_mobilenet_v2', 'convert_torchvision_resnet',
           'convert_torchvision_ssd300', 'convert_vgg16_reducedfc', 'denseclip_config_for',
           'mmdet_ssd_anchor_sizes', 'torchvision_label_map']

"""Weight converters from other projects' checkpoints to densebox checkpoints."""
from .denseclip import (convert_denseclip_checkpoint, convert_denseclip_state_dict,
                        denseclip_config_for)
from .ffnet import convert_ffnet_imagenet
from .mmdet_ssd import (anchor_permutation, convert_mmdet_ssd, convert_mmdet_ssd_checkpoint,
                        mmdet_ssd_anchor_sizes)
from .torchvision_seg import (convert_torchvision_backbone_checkpoint,
                              convert_torchvision_mobilenet_v2, convert_torchvision_resnet)
from .torchvision_ssd import (COCO_CATEGORY_IDS, TORCHVISION_NUM_LOGITS,
                              convert_torchvision_ssd300, torchvision_label_map)
from .vgg16_reducedfc import convert_vgg16_reducedfc

__all__ = ['COCO_CATEGORY_IDS', 'TORCHVISION_NUM_LOGITS', 'anchor_permutation',
           'convert_denseclip_checkpoint', 'convert_denseclip_state_dict',
           'convert_ffnet_imagenet', 'convert_mmdet_ssd', 'convert_mmdet_ssd_checkpoint',
           'convert_torchvision_backbone_checkpoint', 'convert_torchvision_mobilenet_v2',
           'convert_torchvision_resnet', 'convert_torchvision_ssd300', 'convert_vgg16_reducedfc',
           'denseclip_config_for', 'mmdet_ssd_anchor_sizes', 'torchvision_label_map']

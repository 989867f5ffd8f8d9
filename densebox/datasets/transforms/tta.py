"""``TestTimeAug``: one loaded image -> several augmented, packed copies (test-time augmentation).

Configured as in MMDetection / MMSegmentation: ``transforms`` is a list of steps, each a list
of alternatives, and every combination (one alternative per step) is one augmented copy::

    tta_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='TestTimeAug', transforms=[
            [dict(type='Resize', scale=(1024, 512), keep_ratio=True),
             dict(type='Resize', scale=(2048, 1024), keep_ratio=True)],
            [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
            [dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True)],
            [dict(type='PackSegInputs')]])]

gives 2 scales x 2 flips = 4 copies. The output is ``{'inputs': [A tensors],
'data_samples': [A samples]}``; mmengine's ``pseudo_collate`` turns a batch of those into
``A`` lists of ``B`` (what :class:`mmengine.model.BaseTTAModel` expects), and a TTA model
(:mod:`densebox.models.tta`) runs the A batches and merges the predictions.
"""
import copy
import itertools
from typing import List, Optional

from mmcv.transforms import BaseTransform

from densebox.registry import TRANSFORMS

__all__ = ['TestTimeAug']


@TRANSFORMS.register_module()
class TestTimeAug(BaseTransform):
    """Every combination of the alternatives of each step, applied to a copy of the input.

    Args:
        transforms: steps, each a non-empty list of transform configs (or transforms).
    """

    def __init__(self, transforms: List[List[dict]]):
        if not isinstance(transforms, (list, tuple)) or not transforms:
            raise ValueError('TestTimeAug: transforms must be a non-empty list of steps, each a '
                             f'list of alternatives; got {transforms!r}')
        self.steps = []
        for i, step in enumerate(transforms):
            if isinstance(step, dict) or not isinstance(step, (list, tuple)) or not step:
                raise ValueError(f'TestTimeAug: step {i} must be a non-empty list of '
                                 f'alternative transforms, got {step!r}')
            self.steps.append([TRANSFORMS.build(t) if isinstance(t, dict) else t for t in step])

    @property
    def num_augs(self) -> int:
        """How many augmented copies each image gives."""
        count = 1
        for step in self.steps:
            count *= len(step)
        return count

    def transform(self, results: dict) -> Optional[dict]:
        outputs = []
        for chain in itertools.product(*self.steps):
            data = copy.deepcopy(results)  # transforms may change the dict and its arrays
            for t in chain:
                data = t(data)
                if data is None:
                    raise RuntimeError(f'TestTimeAug: {t!r} dropped the image '
                                       f"{results.get('img_path')}")
            outputs.append(data)
        return {key: [out[key] for out in outputs] for key in outputs[0]}

    def __repr__(self) -> str:
        return f'{type(self).__name__}(steps={self.steps})'

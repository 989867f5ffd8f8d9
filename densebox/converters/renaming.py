"""Converting a checkpoint whose layers match densebox's one to one, up to their names.

:func:`convert_by_renaming` is driven by the densebox side: every key of the target model is
mapped to the name the source project gives it, so the source keys the target expects are
known exactly, and a file of another size or model fails with the keys and shapes that do not
fit instead of loading half its weights.
"""
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ['CheckpointMismatchError', 'convert_by_renaming', 'target_shapes']


class CheckpointMismatchError(ValueError):
    """A source checkpoint does not have the keys / shapes of the model it is converted to."""


def target_shapes(build: Callable[[], nn.Module]) -> Dict[str, torch.Size]:
    """Key -> shape of the state dict of ``build()``, built on the meta device (no memory)."""
    with torch.device('meta'):
        model = build()
    return OrderedDict((k, v.shape) for k, v in model.state_dict().items())


def convert_by_renaming(state_dict: Dict[str, Tensor], target: Dict[str, torch.Size],
                        source_name: Callable[[str], Optional[str]], what: str,
                        ignore_prefixes: Sequence[str] = (),
                        optional_suffixes: Sequence[str] = ('num_batches_tracked',)
                        ) -> 'OrderedDict[str, Tensor]':
    """Rename ``state_dict`` (source names) to the target's keys, checking every key.

    Args:
        state_dict: the source weights.
        target: densebox key -> expected shape (:func:`target_shapes`).
        source_name: densebox key -> the source key holding it, or None for a densebox
            parameter the source does not have (it keeps its initial value).
        what: how the error messages call the source ("official iFormer-S checkpoint").
        ignore_prefixes: source keys dropped on purpose (e.g. a classifier ``head.``).
        optional_suffixes: expected source keys that may be absent (BN
            ``num_batches_tracked``).

    Raises:
        CheckpointMismatchError naming unexpected keys, missing keys and shape mismatches
        (with both shapes), in source names.
    """
    expected = OrderedDict()   # source key -> densebox key
    for key in target:
        src = source_name(key)
        if src is not None:
            expected[src] = key
    unexpected = [k for k in state_dict
                  if k not in expected and not k.startswith(tuple(ignore_prefixes))]
    missing = [k for k in expected
               if k not in state_dict and not k.endswith(tuple(optional_suffixes))]
    wrong = [f'{k}: {tuple(state_dict[k].shape)} in the file, {tuple(target[expected[k]])} '
             f'expected' for k in expected
             if k in state_dict and tuple(state_dict[k].shape) != tuple(target[expected[k]])]
    if unexpected or missing or wrong:
        parts = []
        if wrong:
            parts.append(f'{len(wrong)} shape mismatches: {_head(wrong)}')
        if missing:
            parts.append(f'{len(missing)} missing keys: {_head(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys: {_head(unexpected)}')
        raise CheckpointMismatchError(
            f'this is not an {what}: ' + '; '.join(parts)
            + '. Check the arch (and pretrain_img_size) you convert to.')
    return OrderedDict((expected[k], state_dict[k]) for k in expected if k in state_dict)


def _head(items: Iterable[str], n: int = 6) -> str:
    items = list(items)
    shown = ', '.join(items[:n])
    return shown + (f' ... (+{len(items) - n} more)' if len(items) > n else '')

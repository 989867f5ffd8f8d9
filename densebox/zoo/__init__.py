"""densebox model zoo: published weights, where they are, and how they become densebox
checkpoints. See :mod:`densebox.zoo.manifest` for the entries and
:func:`get_checkpoint` for the cache / download / verify / convert rules.

    from densebox import zoo
    zoo.list_models()
    path = zoo.get_checkpoint('ssd300_coco_mmdet', download=True, allow_unverified=True)
    model = densebox.init_model('ssd300_coco_mmdet')

Recipes name their backbones' starting points as ``zoo://NAME`` checkpoints
(:mod:`densebox.zoo.starting_points`); importing this package registers that scheme.
"""
from .converters import CONVERTERS, get_converter
from .hub import (ALLOW_DOWNLOAD_ENV, HOME_ENV, ZOO_KINDS, ChecksumError, cache_dir, clear_cache,
                  get_checkpoint, get_entry, list_models, register_model, sha256_file,
                  source_path)
from .manifest import MANIFEST
from .starting_points import (StartingPointMissing, check_starting_points,
                              find_starting_points, register_zoo_scheme)

register_zoo_scheme()

__all__ = ['MANIFEST', 'CONVERTERS', 'get_converter', 'ALLOW_DOWNLOAD_ENV', 'HOME_ENV', 'ZOO_KINDS',
           'ChecksumError', 'cache_dir', 'clear_cache', 'get_checkpoint', 'get_entry',
           'list_models', 'register_model', 'sha256_file', 'source_path', 'StartingPointMissing',
           'check_starting_points', 'find_starting_points', 'register_zoo_scheme']

"""Recipe starting points: ``zoo://NAME`` checkpoints, resolved from the cache before training.

A recipe names the published weights its backbone starts from with an mmengine checkpoint
scheme, as mmdetection recipes write ``open-mmlab://vgg16_caffe``::

    backbone=dict(type='SSDVGG', ...,
                  init_cfg=dict(type='Pretrained',
                                checkpoint='zoo://vgg16_reducedfc_imagenet_openmmlab'))

``zoo://NAME`` loads ``$DENSEBOX_HOME/checkpoints/NAME.pth``, the zoo's converted
checkpoint, made from the published file on first use (:func:`densebox.zoo.get_checkpoint`:
found in ``checkpoints/downloads/``, or downloaded there when ``DENSEBOX_ALLOW_DOWNLOAD=1``).
Loading goes through :func:`densebox.engine.checkpoint.safe_torch_load`.

``tools/train.py`` calls :func:`check_starting_points` before it builds the runner, so a
missing file stops the run before any data is read, with a message naming the file, where
to get it, the folder to put it in, the converter command, and the one option that trains
from scratch on purpose (``--cfg-options model.backbone.init_cfg=None``).

Verification: starting points are used although the manifest records no full SHA-256
for them (their publishers give none, and densebox cannot download them to compute one):
the hash prefix in the published name is checked where there is one, the zip CRC for
archives, and every converter checks each key and shape against the backbone. The SHA-256
densebox computed is printed.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

from .hub import ALLOW_DOWNLOAD_ENV, cache_dir, get_checkpoint, get_entry

__all__ = ['ZOO_SCHEME', 'StartingPointMissing', 'find_starting_points', 'check_starting_points',
           'resolve_starting_point', 'missing_message', 'converter_command',
           'register_zoo_scheme', 'load_from_zoo', 'CONVERTER_SCRIPTS']

ZOO_SCHEME = 'zoo://'

# zoo converter name -> its command-line wrapper (options = the entry's converter_args).
CONVERTER_SCRIPTS = {
    'vgg16_reducedfc': 'tools/convert/vgg16_reducedfc.py',
    'ffnet_imagenet': 'tools/convert/ffnet_imagenet.py',
    'torchvision_backbone': 'tools/convert/torchvision_backbone.py',
}
_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class StartingPointMissing(FileNotFoundError):
    """The weights a recipe starts from are not in the local cache."""


def zoo_name(checkpoint) -> Optional[str]:
    """``'zoo://NAME'`` -> ``'NAME'``; None for anything else."""
    if isinstance(checkpoint, str) and checkpoint.startswith(ZOO_SCHEME):
        return checkpoint[len(ZOO_SCHEME):]
    return None


def find_starting_points(cfg, root: str = 'model') -> List[Tuple[str, str]]:
    """``(config key of the init_cfg, zoo name)`` for every ``Pretrained`` init_cfg under
    ``cfg[root]`` whose checkpoint is ``zoo://NAME``, e.g.
    ``[('model.backbone.init_cfg', 'vgg16_reducedfc_imagenet_openmmlab')]``."""
    found = []

    def visit(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                here = f'{path}.{key}'
                if key == 'init_cfg':
                    for init in value if isinstance(value, (list, tuple)) else [value]:
                        if isinstance(init, dict) and init.get('type') == 'Pretrained':
                            name = zoo_name(init.get('checkpoint'))
                            if name is not None:
                                found.append((here, name))
                else:
                    visit(value, here)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f'{path}.{i}')

    visit(cfg.get(root) if hasattr(cfg, 'get') else None, root)
    return found


def _script(converter: str) -> Optional[str]:
    script = CONVERTER_SCRIPTS.get(converter)
    if script is None:
        return None
    path = osp.join(_REPO, script)
    if not osp.isfile(path):
        return script
    rel = osp.relpath(path)
    return rel if not rel.startswith('..') else path  # relative inside the checkout only


def converter_command(name: str, src: str) -> Optional[str]:
    """The command line that converts the published file ``src`` of zoo entry ``name`` into
    the cached checkpoint the recipe loads (None when the converter has no wrapper)."""
    entry = get_entry(name)
    script = _script(entry['converter'])
    if script is None:
        return None
    options = ''.join(f' --{k.replace("_", "-")} {v}'
                      for k, v in (entry.get('converter_args') or {}).items())
    dst = osp.join(cache_dir(), f'{name}.pth')
    return f'python {script}{options} {src} {dst}'


def missing_message(name: str, init_key: str, config_name: str = 'the config') -> str:
    """What to tell a user whose cache lacks the starting point ``name`` of ``init_key``."""
    entry = get_entry(name)
    url = entry['url']
    file_name = osp.basename(url)
    member = entry.get('archive_member')
    member_name = osp.basename(member) if member else None
    downloads = osp.join(cache_dir(), 'downloads')
    lines = [
        f'{config_name} starts {init_key.rsplit(".", 1)[0]} from the weights of zoo entry '
        f'{name!r} ({entry.get("source", "")}), and they are not in the cache, so training '
        'stopped before it began.',
        f'  file:       {file_name}' + (f' (or {member_name} from inside it)' if member else ''),
        f'  get it at:  {url}',
        f'  put it in:  {downloads}{os.sep}   (it is converted on first use)',
    ]
    command = converter_command(name, member_name or file_name)
    if command:
        lines.append(f'  or convert it yourself: {command}')
    lines += [
        f'  or let densebox download it: {ALLOW_DOWNLOAD_ENV}=1 (the cache folder is '
        '$DENSEBOX_HOME/checkpoints)',
        f'To train from scratch on purpose instead: --cfg-options {init_key}=None',
    ]
    return '\n'.join(lines)


def resolve_starting_point(name: str, download: Optional[bool] = None) -> str:
    """Path of the converted checkpoint of zoo entry ``name``, made if needed (see the
    module docstring for how it is verified)."""
    return get_checkpoint(name, download=download, allow_unverified=True)


def check_starting_points(cfg, config_name: str = 'the config',
                          download: Optional[bool] = None) -> Dict[str, str]:
    """Resolve every ``zoo://`` starting point of ``cfg.model``; call before training.

    Returns:
        ``{init_cfg key: local checkpoint path}``.

    Raises:
        StartingPointMissing: a starting point is neither converted nor downloadable (the
            message says which file, where to get it and put it, and how to skip it).
        KeyError: a ``zoo://`` name that the zoo does not know.
        RuntimeError: the file is there but is not what the entry describes.
    """
    from .hub import list_models
    resolved = {}
    for key, name in find_starting_points(cfg):
        if name not in list_models():
            raise KeyError(f'{config_name}: {key} names zoo://{name}, which is not in the zoo; '
                           f'backbone weights it knows: {", ".join(list_models("backbone"))}. '
                           f'To train from scratch on purpose: --cfg-options {key}=None')
        try:
            resolved[key] = resolve_starting_point(name, download=download)
        except FileNotFoundError as err:
            raise StartingPointMissing(missing_message(name, key, config_name)) from err
        except (RuntimeError, KeyError, ValueError) as err:
            raise RuntimeError(f'{config_name}: the starting point of {key.rsplit(".", 1)[0]} '
                               f'(zoo://{name}) could not be prepared: {err}\nTo train from '
                               f'scratch on purpose instead: --cfg-options {key}=None') from err
    return resolved


# --------------------------------------------------------------- the zoo:// checkpoint scheme
def load_from_zoo(filename: str, map_location=None) -> dict:
    """mmengine checkpoint loader for ``zoo://NAME`` (see the module docstring)."""
    from densebox.engine.checkpoint import safe_torch_load
    name = zoo_name(filename)
    try:
        path = resolve_starting_point(name)
    except FileNotFoundError as err:
        raise StartingPointMissing(missing_message(name, 'model.backbone.init_cfg')) from err
    return safe_torch_load(path, map_location=map_location)


def register_zoo_scheme() -> None:
    """Make ``zoo://`` known to mmengine's ``CheckpointLoader`` (idempotent)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=ZOO_SCHEME, loader=load_from_zoo, force=True)

"""What every densebox tool does the same way: finding a config, loading it, mixed precision.

``densebox train|test|infer|quickstart``, ``tools/*.py`` and :func:`densebox.init_model`
all find a config with :func:`resolve_config`, so a name that works for one works for all,
from any folder:

1. a path as given (relative to the current folder, or absolute);
2. a path relative to the densebox checkout (``configs/ssd300_voc.py`` run from elsewhere);
3. a model-zoo name (``densebox zoo list``): its config, with the overrides the zoo
   weights need (``cfg_options`` of the zoo entry); a zoo name wins over a recipe of the
   same name (``ssd300_coco_torchvision`` is both) because it also brings the weights;
4. a bare recipe name (``ssd300_voc`` or ``ssd300_voc.py``), looked up in the checkout's
   ``configs/``.
"""
import os
import os.path as osp
from typing import List, Optional, Tuple

__all__ = ['REPO_ROOT', 'CONFIG_DIR', 'find_config_file', 'resolve_config', 'load_tool_config',
           'config_names', 'cpu_supports_bf16', 'amp_plan', 'enable_tensorboard']

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # the checkout holding densebox/
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')


def _candidates(config: str, recipe_names: bool = True) -> List[str]:
    """Where :func:`find_config_file` looks for ``config``, in order."""
    config = osp.expanduser(str(config))
    found = [config]
    if not osp.isabs(config):
        found.append(osp.join(REPO_ROOT, config))
        if recipe_names:
            name = config if config.endswith('.py') else config + '.py'
            found.append(osp.join(CONFIG_DIR, name))
    return list(dict.fromkeys(found))


def find_config_file(config: str, recipe_names: bool = True) -> Optional[str]:
    """The config file ``config`` names: a path (steps 1-2 of the module docstring) or,
    with ``recipe_names``, a recipe name (step 4); None when there is none."""
    for path in _candidates(config, recipe_names):
        if osp.isfile(path):
            return path
    return None


def config_names() -> List[str]:
    """The recipe names in the checkout's ``configs/`` (without ``.py``), sorted."""
    if not osp.isdir(CONFIG_DIR):
        return []
    return sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith('.py'))


def resolve_config(config: str) -> Tuple[str, dict, Optional[str]]:
    """Find the config file that ``config`` names.

    Args:
        config: a path, a checkout-relative path, a recipe name or a zoo name.

    Returns:
        ``(path, cfg_options, zoo_name)``: the config file, the overrides a zoo entry needs
        (``{}`` otherwise) and the zoo name (None when ``config`` is not one).

    Raises:
        FileNotFoundError: nothing matches; the message lists where it looked, the recipe
        names and the zoo names.
    """
    path = find_config_file(config, recipe_names=False)
    if path is not None:
        return path, {}, None
    from densebox import zoo
    if str(config) in zoo.MANIFEST:
        entry = zoo.get_entry(str(config))
        if not entry.get('config'):
            raise ValueError(f'zoo entry {config!r} holds {entry.get("kind")} weights and has no '
                             'config; use it through a config that initialises from it')
        zoo_path = find_config_file(entry['config'])
        if zoo_path is None:
            raise FileNotFoundError(f'zoo entry {config!r} names the config {entry["config"]}, '
                                    f'which is not in {REPO_ROOT}')
        return zoo_path, dict(entry.get('cfg_options') or {}), str(config)
    path = find_config_file(config)
    if path is not None:
        return path, {}, None
    looked = ', '.join(_candidates(config))
    raise FileNotFoundError(
        f'{str(config)!r} is neither a config file nor a model-zoo name (looked for '
        f'{looked}). Give a config file, a recipe '
        f'name ({", ".join(config_names()) or "none found"}) or a model-zoo name '
        f'({", ".join(zoo.list_models("model"))}; see `densebox zoo list`).')


def load_tool_config(config: str, cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None):
    """The :class:`mmengine.config.Config` a tool runs: :func:`resolve_config`, then the zoo
    overrides, then ``cfg_options`` (checked by
    :func:`densebox.engine.config_check.check_cfg_options`); ``work_dir`` defaults to ``./work_dirs/<config name>``."""
    from mmengine.config import Config
    path, zoo_options, zoo_name = resolve_config(config)
    cfg = Config.fromfile(path)
    if zoo_options:
        cfg.merge_from_dict(zoo_options)
    from densebox.engine.config_check import check_cfg_options
    cfg_options = check_cfg_options(cfg, cfg_options, path)  # unknown keys: close matches
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = zoo_name or osp.splitext(osp.basename(path))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


# ------------------------------------------------------------------------ mixed precision
def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86, or an ARM
    core with BF16), so that bfloat16 autocast is faster rather than emulated."""
    try:
        with open('/proc/cpuinfo') as f:
            text = f.read()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(('flags', 'Features')):
            flags.update(line.split(':', 1)[1].split())
    return bool(flags & {'avx512_bf16', 'amx_bf16', 'bf16'})


def amp_plan(purpose: str) -> str:
    """What ``--amp`` does on this machine, or a clear error.

    Args:
        purpose: ``'train'`` or ``'test'``.

    Returns:
        ``'cuda'`` (float16 autocast, and a loss scaler when training) or ``'cpu-bf16'``
        (bfloat16 autocast on a CPU with native bfloat16; test only).

    Raises:
        SystemExit: no CUDA device for training, or no native bfloat16 CPU for testing; the
        message says why and what to do instead.
    """
    import torch
    if torch.cuda.is_available():
        return 'cuda'
    if purpose == 'train':
        raise SystemExit('--amp: mixed-precision training (mmengine AmpOptimWrapper, float16 '
                         'with a loss scaler) needs a CUDA GPU and torch sees none. Train '
                         'without --amp on this machine.')
    if cpu_supports_bf16():
        return 'cpu-bf16'
    raise SystemExit('--amp: torch sees no CUDA GPU and this CPU has no native bfloat16 '
                     '(AVX512-BF16 / AMX), so autocast would only be slower. Run without '
                     '--amp.')


# ------------------------------------------------------------------------------ TensorBoard
def enable_tensorboard(cfg) -> None:
    """Add mmengine's ``TensorboardVisBackend`` to ``cfg.visualizer`` (``--tensorboard``):
    losses, learning rate and metrics then also go to ``<work_dir>/<timestamp>/vis_data/``
    as TensorBoard event files (``tensorboard --logdir work_dirs``).

    Raises:
        SystemExit: the optional ``tensorboard`` package is missing (``pip install
        "densebox[tensorboard]"``).
    """
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise SystemExit('--tensorboard needs the tensorboard package: pip install '
                         '"densebox[tensorboard]" (or pip install tensorboard)') from None
    visualizer = dict(cfg.get('visualizer') or dict(type='Visualizer', name='visualizer'))
    backends = list(visualizer.get('vis_backends') or [dict(type='LocalVisBackend')])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    visualizer['vis_backends'] = backends
    cfg.visualizer = visualizer

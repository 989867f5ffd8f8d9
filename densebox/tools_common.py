"""What every densebox tool does the same way: loading the config it runs, building the
Runner, mixed precision and TensorBoard switches. Configs are found as
:mod:`densebox.config` says, for tools and the API alike."""
import os.path as osp
from typing import Iterable, Optional

__all__ = ['load_tool_config', 'build_runner', 'cpu_supports_bf16', 'amp_plan',
           'enable_tensorboard']


def load_tool_config(config: str, cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None):
    """The :class:`mmengine.config.Config` a tool runs: :func:`densebox.config.load_config`
    (found as every tool finds it, ``cfg_options`` checked); ``work_dir`` defaults to
    ``./work_dirs/<config or zoo name>``."""
    from densebox.config import load_config, resolve_config
    path, _, zoo_name = resolve_config(config)
    cfg = load_config(config, cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = zoo_name or osp.splitext(osp.basename(path))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


def build_runner(cfg, check_keys: Optional[Iterable[str]] = None):
    """mmengine's Runner for ``cfg``, after :func:`densebox.config_check.check_config` has
    checked every ``type`` and argument it will build (under ``check_keys`` only, when
    given), so a misspelt one fails now and not after an epoch."""
    from mmengine.runner import Runner

    from densebox.config_check import check_config
    from densebox.setup_env import register_all_modules
    register_all_modules()
    check_config(cfg, check_keys)
    return Runner.from_cfg(cfg)


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

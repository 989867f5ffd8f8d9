"""Starting the process group for ``--launcher pytorch|slurm|mpi``, with or without GPUs.

mmengine's ``init_dist`` always calls ``torch.cuda.set_device`` and its Runner wraps the
model in DDP with ``device_ids=[LOCAL_RANK]``, so on a machine without CUDA two processes
cannot start (``torchrun --nproc_per_node 2 ... --launcher pytorch``). Here the process
group is started before the Runner is built (the Runner then uses it as it is):

- with CUDA: each process takes GPU ``LOCAL_RANK`` and the configured backend (``nccl``);
- without: the ``gloo`` backend (said so in the log when the config asked for ``nccl``), no
  ``set_device``, and DDP without ``device_ids``.
"""
import datetime
import os
import subprocess

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def _env_int(*names: str) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    raise RuntimeError(f'the launcher did not set {" or ".join(names)}: start the processes '
                       'with torchrun (--launcher pytorch), srun (--launcher slurm) or mpirun '
                       '(--launcher mpi)')


def _set_env_from_slurm(port=None) -> None:
    """RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT from srun's variables."""
    os.environ['RANK'] = str(_env_int('SLURM_PROCID'))
    os.environ['WORLD_SIZE'] = str(_env_int('SLURM_NTASKS'))
    os.environ['LOCAL_RANK'] = str(_env_int('SLURM_LOCALID'))
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1').strip()
    os.environ.setdefault('MASTER_PORT', str(port or 29500))


def _set_env_from_mpi(port=None) -> None:
    os.environ['RANK'] = str(_env_int('OMPI_COMM_WORLD_RANK', 'PMI_RANK'))
    os.environ['WORLD_SIZE'] = str(_env_int('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE'))
    os.environ['LOCAL_RANK'] = str(_env_int('OMPI_COMM_WORLD_LOCAL_RANK', 'MPI_LOCALRANKID'))
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    os.environ.setdefault('MASTER_PORT', str(port or 29500))


def init_distributed(launcher: str, cfg) -> None:
    """Start the process group for ``launcher`` (no-op for ``'none'`` or when it is already
    started) and adapt ``cfg`` to the device: on CPU, DDP gets ``device_ids=None``."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'--launcher must be one of {", ".join(LAUNCHERS)}, not {launcher!r}')
    if launcher == 'none':
        return
    dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
    backend = dist_cfg.pop('backend', None)
    port = dist_cfg.pop('port', None)
    if launcher == 'slurm':
        _set_env_from_slurm(port)
    elif launcher == 'mpi':
        _set_env_from_mpi(port)
    rank, world_size = _env_int('RANK'), _env_int('WORLD_SIZE')
    local_rank = _env_int('LOCAL_RANK')
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        backend = backend or 'nccl'
    else:
        if backend in (None, 'nccl'):
            print_log(f'no CUDA device: process {rank} of {world_size} uses the gloo backend '
                      f'(env_cfg.dist_cfg.backend is {backend!r}, which needs GPUs)',
                      logger='current')
            backend = 'gloo'
        _ddp_without_device_ids(cfg)
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = backend
    if 'timeout' in dist_cfg:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend, init_method='env://', rank=rank,
                                      world_size=world_size, **dist_cfg)


def _ddp_without_device_ids(cfg) -> None:
    """The Runner gives DDP ``device_ids=[LOCAL_RANK]`` unless the wrapper config says
    otherwise; a CPU module needs ``None``."""
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters',
                                                                    False),
                                     device_ids=None)
    else:
        wrapper.setdefault('device_ids', None)

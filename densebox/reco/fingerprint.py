"""Short digests that tell which weights made an artifact (an index, references).

Hashing every byte of a ViT-L would take seconds; a digest of each tensor's name, shape,
sum and a strided sample of its values tells different weights apart just as well for the
purpose of refusing mismatched artifacts.
"""
import hashlib

import torch

__all__ = ['weights_digest']


@torch.no_grad()
def weights_digest(module: torch.nn.Module, samples: int = 256) -> str:
    """A 16-hex-digit digest of ``module``'s state dict (names, shapes, values)."""
    h = hashlib.sha1()
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(value.shape)).encode())
        if not value.is_floating_point():
            h.update(value.detach().cpu().contiguous().numpy().tobytes()[:4096])
            continue
        flat = value.detach().float().cpu().reshape(-1)
        step = max(1, flat.numel() // samples)
        h.update(flat[::step][:samples].numpy().tobytes())
        h.update(f'{float(flat.double().sum()):.6e}'.encode())
    return h.hexdigest()[:16]

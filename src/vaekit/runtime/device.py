"""Resolve the compute device once; everything else creates tensors on the device of its inputs."""

from __future__ import annotations

import torch

from vaekit.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; an explicit choice that is not available is an error."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise UserError("device = 'cuda' but this torch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not mps:
        raise UserError("device = 'mps' but this machine has no Apple GPU; use --device cpu or auto")
    return torch.device(name)

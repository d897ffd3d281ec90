"""Weights that are what vaekit wrote: a checksum of every tensor, checked on every load.

A safetensors file vaekit writes carries, in its header, the SHA-256 of its tensors (names, dtypes, shapes
and bytes, in name order) and of the rest of its header's metadata (a checkpoint's progress and optimizer
counters). Contents that no longer match it (a flipped bit on disk, a bad copy, an edit) are
damaged; so are weights holding NaN or infinity, whatever their checksum says. A file written before
checksums existed has no checksum to match, and its values are still checked. `vaekit.runs.weights`
refuses a damaged file when it reads one.
"""

from __future__ import annotations

import hashlib

import torch

from vaekit.runs.directory import STATE_KEY

CHECKSUM_KEY = "vaekit_sha256"  # in the safetensors header's metadata
# What a file of an older vaekit, without a checksum, holds in its metadata: a checkpoint's state. Anything
# else beside no checksum is damage.
WRITTEN_BEFORE_CHECKSUMS = (STATE_KEY,)


def checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order, and of the metadata but the
    checksum itself: the same for the same contents however the file lays them out."""
    digest = hashlib.sha256()
    for key in sorted(set(metadata) - {CHECKSUM_KEY}):
        digest.update(f"{key}\0{metadata[key]}\0".encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def damage(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str | None:
    """What is wrong with a file's tensors, in words; None when nothing is."""
    stored = metadata.get(CHECKSUM_KEY)
    if stored is not None and stored != checksum(tensors, metadata):
        return "its contents do not match the checksum written with them: the file changed after vaekit wrote it"
    unknown = sorted(set(metadata) - set(WRITTEN_BEFORE_CHECKSUMS))
    if stored is None and unknown:  # e.g. the checksum's own name damaged, which nothing else would catch
        return f"its header holds no checksum but an entry vaekit never wrote, {unknown[0]!r}"
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"{name} holds NaN or infinite values"
    return None

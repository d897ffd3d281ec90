"""The labels a conditional run (`train --conditional`) encodes and decodes with, checked against its classes.

A plain run ignores labels; a conditional one needs each input's own label to encode it (q(z|x, y)), and a
label to decode with (p(x|z, y)): the class asked for, or by default the input's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaekit.errors import UserError


class RunLabels:
    def __init__(self, run_dir: Path, class_names: tuple[str, ...] | None, classes: int, device: torch.device):
        """`classes` is the model's count: 0 for a plain run."""
        self.run_dir, self.names, self.classes, self.device = run_dir, list(class_names or ()), classes, device

    @property
    def conditional(self) -> bool:
        return self.classes > 0

    def indices(self, names: list[str] | tuple[str, ...], flag: str = "--label") -> np.ndarray:
        """The class indices of class names as the data gave them (`DataInfo.class_names`)."""
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise UserError(f"{flag} {unknown[0]}: not a class of {self.run_dir}, whose classes are "
                            f"{', '.join(self.names) if self.names else 'none (it was trained without labels)'}")
        return np.array([self.names.index(name) for name in names], dtype=np.int64)

    def index(self, name: str | None, flag: str = "--label") -> int | None:
        """The class index of one class name; None for None (the caller's default)."""
        return None if name is None else int(self.indices([name], flag)[0])

    def tensor(self, labels: np.ndarray | None, count: int, what: str) -> torch.Tensor | None:
        """A conditional run's labels (count,) on the device; None for a plain run, which ignores them."""
        if not self.conditional:
            return None
        if labels is None:
            raise UserError(f"{self.run_dir} is a conditional VAE: {what} needs the inputs' labels (class "
                            "sub-folders, a --label-column, an .npz's y)")
        labels = np.asarray(labels)
        if labels.shape != (count,) or labels.min(initial=0) < 0 or labels.max(initial=0) >= self.classes:
            raise UserError(f"{what}: {self.run_dir} takes one label per input, a class index 0 to "
                            f"{self.classes - 1}, not {labels.shape} values")
        return torch.as_tensor(labels, dtype=torch.long, device=self.device)

    def decoding(self, label: int | None, count: int, own: np.ndarray | None = None) -> torch.Tensor | None:
        """The labels to decode `count` codes with: `label` for all, else the inputs' `own`, else class 0."""
        if not self.conditional:
            return None
        if label is not None:
            return self.tensor(np.full(count, label), count, "decode")
        return self.tensor(np.zeros(count, dtype=np.int64) if own is None else np.asarray(own), count, "decode")

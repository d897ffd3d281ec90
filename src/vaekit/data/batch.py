"""A batch as the model sees it: the data, and what a model may be conditioned on or masked by."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    """Examples in model units, with what some models need beside them.

    `x` is (B, *event_shape). `labels` (B,) are class indices, the condition y of a conditional
    model (None for a model of x alone); `mask` (B, T) is true where a padded sequence holds tokens
    (None for fixed-size data). A model that needs neither ignores them.
    """

    x: torch.Tensor
    labels: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

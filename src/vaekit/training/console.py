"""What a person watching training sees: a progress bar per epoch, and a line for some epochs.

The bar is for a terminal: where stderr is a file or a pipe (a log), `EpochLines` prints the lines alone."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

EPOCH_LINES = 25  # long runs print about this many epoch lines, not one per epoch
POSTFIX_EVERY = 20  # steps between updates of the bar's loss


def describe(record: dict[str, Any]) -> str:
    """One epoch's line, from its metrics.jsonl record."""
    text = f"epoch {record['epoch']:>3}  train -ELBO {-record['train_elbo']:.2f}"
    if "val_elbo" in record:
        text += (
            f"  val -ELBO {-record['val_elbo']:.2f} "
            f"(recon {-record['val_reconstruction']:.2f}, KL {record['val_kl']:.2f})"
        )
    if "val_iwae" in record:
        text += f"  val -IWAE {-record['val_iwae']:.2f}"
    return text + f"  {record['images_per_second']:,.0f} img/s"


class Reporter:
    """The loop's callback: nothing by default (library use, ranks other than 0)."""

    def epoch_started(self, epoch: int, steps: int, first_step: int) -> None:
        """Epoch `epoch` (0-based) of `steps` steps begins, or resumes at `first_step`."""

    def step_ended(self, step: int, sums: torch.Tensor, examples: int) -> None:
        """After step `step` (0-based in its epoch) of a batch whose sums (bound, recon, KL) are `sums`."""

    def epoch_trained(self) -> None:
        """The epoch's last step is done; validation comes next."""

    def epoch_ended(self, record: dict[str, Any], finished: bool) -> None:
        """The epoch's metrics.jsonl record is written; `finished` if training ends with it."""


class EpochLines(Reporter):
    """Every k-th epoch's line (every one of a short run) and the last: what a log of training keeps."""

    def __init__(self, epochs: int):
        self.every = max(1, epochs // EPOCH_LINES)

    def epoch_ended(self, record: dict[str, Any], finished: bool) -> None:
        if record["epoch"] % self.every == 0 or finished:
            tqdm.write(describe(record))


class ConsoleReporter(EpochLines):
    """A tqdm bar over each epoch's steps, besides the epoch lines: for a terminal."""

    def __init__(self, epochs: int):
        super().__init__(epochs)
        self.bar: tqdm | None = None

    def epoch_started(self, epoch: int, steps: int, first_step: int) -> None:
        self.bar = tqdm(total=steps, initial=first_step, desc=f"epoch {epoch + 1}", leave=False, dynamic_ncols=True)

    def step_ended(self, step: int, sums: torch.Tensor, examples: int) -> None:
        if self.bar is None:
            return
        if step % POSTFIX_EVERY == 0:  # reading the loss waits for the step to finish: not every step
            self.bar.set_postfix(loss=f"{-sums[0].item() / max(examples, 1):.2f}", refresh=False)
        self.bar.update()

    def epoch_trained(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

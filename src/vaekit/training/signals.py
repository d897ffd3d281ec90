"""Ctrl-C and SIGTERM as a request to stop after the current step, with a checkpoint that resumes exactly."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


def signal_name(number: int) -> str:
    return SIGNAL_NAMES.get(number, f"signal {number}")


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C, SIGTERM) after writing a checkpoint; says how to resume.

    A `KeyboardInterrupt`, so code that handles Ctrl-C keeps working; `exit_status` is the shell's
    convention for the signal (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_status = 128 + signal_number


@dataclass
class StopRequest:
    """Set (by a signal handler or any caller) to end training after the current step, with a checkpoint."""

    signal_number: int | None = None  # the signal that asked; None while no one has

    def request(self, signal_number: int = signal.SIGINT) -> None:
        if self.signal_number is None:
            self.signal_number = signal_number


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopRequest]:
    """Turn the first Ctrl-C or SIGTERM into a `StopRequest`, for the duration of the block.

    The second one acts as usual (Ctrl-C raises `KeyboardInterrupt` at once), so a user who does
    not want to wait for the checkpoint need not. The previous handlers come back on exit. Outside
    the main thread, where Python allows no handlers, the request is never set.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    # getsignal gives None for a handler installed outside Python; such a signal is left alone.
    previous = {number: signal.getsignal(number) for number in signals if signal.getsignal(number) is not None}

    def handle(number: int, frame: Any) -> None:
        stop.request(number)
        signal.signal(number, previous[number])
        logger.warning("%s: stopping after this step to write a checkpoint; send it again to quit at once",
                       signal_name(number))

    for number in previous:
        signal.signal(number, handle)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

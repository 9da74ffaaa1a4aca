"""Progress records yielded by the engine's generators."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Progress", "drain"]

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """One step of long work.

    Attributes
    ----------
    stage : str
        What is running: ``"predict"``, ``"instances"``, ``"train"``, ...
    done, total : int
        Steps finished and steps in all (tiles, planes, batches).
    message : str
        A short human-readable note (e.g. "plane 3/40" or "loss 0.21").
    """

    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def drain(gen: Generator[Any, None, R], on_record: Callable[[Any], object] | None = None) -> R:
    """Run a progress generator to its end and return its result.

    Parameters
    ----------
    gen : generator yielding progress records and returning a result
    on_record : callable, optional
        Called with every record (a progress bar, a log, a list's append).
    """
    while True:
        try:
            record = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_record is not None:
            on_record(record)

"""Progress records yielded by the engine's generators."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Progress"]


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

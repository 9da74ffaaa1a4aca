"""Wording of the messages users read: a count with its noun in the right number."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` followed by its noun: ``"1 object"``, ``"2 objects"``, ``"0 objects"``.

    Parameters
    ----------
    count : int
        How many.
    singular : str
        The noun for one (``"object"``, ``"time point"``).
    plural_form : str or None
        The noun for any other count; None adds an ``s`` (``"objects"``).

    Returns
    -------
    str
    """
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"

"""Checks for numeric options: what no command can use is a usage error (exit 2).

Typer's ``min=`` lets NaN through (every comparison with NaN is false) and takes ``inf``; a NaN
temperature then wrote a constant file and exited 0. Every float option takes ``finite(...)`` as
its callback and every seed ``seed_range``, so one rule holds for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import typer

SEED_MAX = 2**64 - 1
"""torch takes 64-bit seeds; a larger one failed deep in the run with a traceback."""


def finite(minimum: float, *, above: bool = False) -> Callable[[float | None], float | None]:
    """A callback admitting finite floats of at least ``minimum`` (more than it when ``above``)."""
    bound = f"more than {minimum:g}" if above else f"{minimum:g} or more"

    def check(value: float | None) -> float | None:
        if value is not None and not (
            math.isfinite(value) and (value > minimum if above else value >= minimum)
        ):
            raise typer.BadParameter(f"{value}: give a finite number, {bound}")
        return value

    return check


def seed_range(value: int) -> int:
    """A callback admitting seeds from 0 to 2**64 - 1."""
    if not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"{value}: give a whole number from 0 to 2**64 - 1")
    return value

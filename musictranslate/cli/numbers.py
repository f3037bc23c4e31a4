"""Checks for numeric options: what no command can use is a usage error (exit 2).

Typer's ``min=`` lets NaN through (every comparison with NaN is false) and takes ``inf``; a NaN
temperature then wrote a constant file and exited 0. Every float option takes ``finite(...)`` as
its callback and every seed ``seed_range``, so one rule holds for all of them, and each refusal
is the usual one ``error:`` line naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import typer

from .common import fail

SEED_MAX = 2**64 - 1
"""torch takes 64-bit seeds; a larger one failed deep in the run with a traceback."""


def finite(
    minimum: float = -math.inf, *, above: bool = False, maximum: float = math.inf
) -> Callable[[typer.CallbackParam, float | None], float | None]:
    """A callback admitting finite floats of at least ``minimum`` (more than it when ``above``)
    and at most ``maximum``."""
    bound = "" if minimum == -math.inf else f", {'more than' if above else 'at least'} {minimum:g}"
    bound += "" if maximum == math.inf else f", at most {maximum:g}"

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is not None and not (
            math.isfinite(value) and (value > minimum if above else value >= minimum) and value <= maximum
        ):
            fail(f"{param.opts[0]} {value}: give a finite number{bound}", 2)
        return value

    return check


def seed_range(param: typer.CallbackParam, value: int) -> int:
    """A callback admitting seeds from 0 to 2**64 - 1."""
    if not 0 <= value <= SEED_MAX:
        fail(f"{param.opts[0]} {value}: give a whole number from 0 to 2**64 - 1", 2)
    return value

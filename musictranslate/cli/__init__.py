"""The ``musictranslate`` command line: parses arguments, calls the library, prints.

Each group of commands lives in its own module and registers itself on ``app``; heavy imports
(torch, librosa) happen inside the commands so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

from . import evaluate_cmd, live_cmd, models_cmd, train_cmd, translate_cmd  # noqa: F401  (registers commands)
from .common import app


def main() -> None:
    import sys
    import warnings

    from ..stop import stop_on_signals

    if not sys.warnoptions:  # librosa's and torch's warnings are not the user's to act on
        warnings.simplefilter("ignore")
    stop_on_signals()
    app()


__all__ = ["app", "main"]

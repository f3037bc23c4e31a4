"""What every command shares: the Typer app, error reporting, progress bars, and the options that
mean the same everywhere (``--device``, ``--threads``, ``--json``, ``--quiet``).

Nothing here imports torch: ``--help`` and ``--version`` must answer at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__

app = typer.Typer(
    name="musictranslate",
    help="Translate music between instruments, styles and genres.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True)

ModelsOption = Annotated[
    Optional[Path],
    typer.Option(
        "--models", help="Registry folder searched first (else $MUSICTRANSLATE_MODELS, ./models, ...)."
    ),
]
ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Model name in the registry, or a model folder.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")]


class Device(str, Enum):
    """Where generation runs. ``auto`` picks CUDA only when torch sees a device; never assumed."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DeviceOption = Annotated[
    Device, typer.Option("--device", help="auto (CUDA when torch sees one, else CPU), cpu or cuda.")
]
ThreadsOption = Annotated[
    Optional[int], typer.Option("--threads", min=1, help="CPU threads for torch (default: all cores).")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (and nothing else there).")
]

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"musictranslate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")] = False,
) -> None:
    """Translate music between instruments, styles and genres."""
    _state["debug"] = debug
    if debug:
        import warnings

        warnings.resetwarnings()  # the libraries' warnings too, which ``main`` hides otherwise


def debugging() -> bool:
    """True when ``--debug`` was given: show tracebacks, also of failures a run recorded."""
    return _state["debug"]


def report_error(message: str) -> None:
    """Print ``error: message`` as one line on stderr; the message is never read as rich markup,
    so a file called ``take [2].wav`` prints as it is."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit with ``code``."""
    report_error(message)
    raise typer.Exit(code)


def print_json(document: Any) -> None:
    """Write ``document`` to stdout as JSON: the only thing a ``--json`` command prints there."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one-line messages and a non-zero exit (tracebacks with --debug)."""
    from ..errors import MusicTranslateError
    from ..stop import describe, exit_status, raise_if_stopped

    try:
        yield
        raise_if_stopped()
    except MusicTranslateError as exc:
        if _state["debug"]:
            raise
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (``stop.Stopped``)
        fail(describe(exc), exit_status(exc))
    except MemoryError:
        if _state["debug"]:
            raise
        fail("out of memory; try a shorter file or a smaller --batch-size")
    except OSError as exc:  # the system refused a file the library did not expect to fail on
        if _state["debug"]:
            raise
        fail(f"{exc.filename or 'file'}: {exc.strerror or exc}; check the path, permissions and free space")


@contextmanager
def progress_bar(description: str, quiet: bool) -> Iterator:
    """A rich progress bar with an ETA; ``progress(done, total)`` updates it. Silent when quiet
    or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update

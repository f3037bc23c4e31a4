"""What every command shares: the Typer app, error reporting, progress bars."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

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
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

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


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit with ``code``."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one-line messages and a non-zero exit (tracebacks with --debug)."""
    from ..errors import MusicTranslateError

    try:
        yield
    except MusicTranslateError as exc:
        if _state["debug"]:
            raise
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except MemoryError:
        if _state["debug"]:
            raise
        fail("out of memory; try a shorter file or a smaller --batch-size")


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

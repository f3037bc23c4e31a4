"""What every command shares: the Typer app, error reporting, progress bars, and the options that
mean the same everywhere (``--device``, ``--threads``, ``--json``, ``--quiet``).

Usage errors are one line, ``error: <what>; see '<command> --help'``, like every other error,
instead of typer's boxed usage text; help shows a plain metavar (``N``, ``PATH``) for an option's
value and nothing for a flag, instead of typer's Python type tags (``<bool>``, ``<list[Path]>``).

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
from typer.core import TyperArgument, TyperGroup

from .. import __version__

stderr = Console(stderr=True)

UsageError = typer.BadParameter.__mro__[1]
"""click's ``UsageError``, wherever this typer keeps click (its own copy from typer 0.20 on)."""
ClickException = UsageError.__mro__[1]


def _plain_metavars(params: list) -> None:
    """Help shows an option's value as its long name in capitals (``--sample-rate SAMPLE_RATE``,
    as argparse does) unless the option names one, nothing for a flag, and an argument by its
    name alone."""
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx: None  # typer would add "<list[Path]>"
        elif param.metavar is None:
            long_name = max(param.opts, key=len).lstrip("-").replace("-", "_").upper()
            param.metavar = "" if getattr(param, "is_flag", False) else long_name


def _usage_error(exc: Exception) -> None:
    """``error: <message>; see '<command> --help'`` on one line, and exit 2, as every other error
    of this tool looks."""
    context = getattr(exc, "ctx", None)
    hint = f"; see '{context.command_path} --help'" if context is not None else ""
    report_error(" ".join(exc.format_message().split()).rstrip(".") + hint)
    raise SystemExit(getattr(exc, "exit_code", 2))


class Group(TyperGroup):
    """The app's command groups: plain metavars in help, one-line usage errors."""

    def get_params(self, ctx: Any) -> list:
        params = super().get_params(ctx)
        _plain_metavars(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_metavars(command.get_params(ctx))
        return command

    def main(self, *args: Any, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **extra)
        try:
            code = super().main(*args, standalone_mode=False, **extra)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help itself has been printed
                raise SystemExit(exc.exit_code) from None
            _usage_error(exc)
        except typer.Abort:
            report_error("aborted")
            raise SystemExit(1) from None
        raise SystemExit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="musictranslate",
    help="Translate music between instruments, styles and genres.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=Group,
)

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
    """Write ``document`` to stdout as JSON: the only thing a ``--json`` command prints there.
    File names keep their own letters (``ensure_ascii=False``): a script reads UTF-8 anyway."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def table_console() -> Console:
    """The console for a result table on stdout. In a pipe rich would assume 80 columns and fold
    long file names across lines, which breaks ``grep`` and ``cut``: there, a row is one line."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=10_000)


def interactive(quiet: bool) -> bool:
    """Progress bars and status lines: on a terminal, unless ``--quiet``."""
    return not quiet and sys.stderr.isatty()


def tell(message: str, quiet: bool) -> None:
    """Say on stderr what is happening before a progress bar can (loading a model, fitting an
    input), so a terminal never sits silent for seconds; where bars show, so does this."""
    if interactive(quiet):
        stderr.print(f"{message} ...", markup=False, highlight=False)


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
    except OSError as exc:  # the system refused a file the library did not expect to fail on
        if _state["debug"]:
            raise
        fail(f"{exc.filename or 'file'}: {exc.strerror or exc}; check the path, permissions and free space")


@contextmanager
def progress_bar(description: str, quiet: bool) -> Iterator:
    """A rich progress bar with an ETA; ``progress(done, total)`` updates it. Silent when quiet
    or when stderr is not a terminal."""
    if not interactive(quiet):
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

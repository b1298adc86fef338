"""The `cvtriage` command: a thin layer over the plain functions of each stage.

Each command validates its settings once, calls one function, and prints a summary. A user's
mistake (a CvtriageError) becomes one line on stderr and a non-zero exit, never a traceback.
"""

# Each module registers its commands; `--help` lists them in this order.
from cvtriage.cli import scan, sites, review, teach, train, audit, synth, watch  # noqa: F401, I001
from cvtriage.cli.app import app, prepare_environment

__all__ = ["app", "main", "prepare_environment"]


def main() -> None:
    """The console script. Click's own usage errors (an option misspelled, a value of the wrong
    kind, a command that does not exist) become one line as well, naming where to look."""
    import sys

    import typer

    try:
        code = app(standalone_mode=False)
    except typer.Abort:  # end of input at a prompt; Ctrl-C comes back as exit code 130
        typer.echo("cvtriage: interrupted", err=True)
        sys.exit(130)
    except typer.TyperException as error:  # Click's exceptions, as Typer carries them
        # A group run bare has printed its help (Typer, too, knows this one by its name).
        if type(error).__name__ != "NoArgsIsHelpError":
            context = getattr(error, "ctx", None)
            where = f" (see {context.command_path} --help)" if context is not None else ""
            typer.echo(f"cvtriage: error: {error.format_message()}{where}", err=True)
        sys.exit(getattr(error, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)

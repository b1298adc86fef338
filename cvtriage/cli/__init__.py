"""The `cvtriage` command: a thin layer over the plain functions of each stage.

Each command validates its settings once, calls one function, and prints a summary. A user's
mistake (a CvtriageError) becomes one line on stderr and a non-zero exit, never a traceback.
"""

# Each module registers its commands; `--help` lists them in this order.
from cvtriage.cli import scan, sites, review, teach, train, audit, synth, watch  # noqa: F401, I001
from cvtriage.cli.app import app, prepare_environment

__all__ = ["app", "main", "prepare_environment"]


def main() -> None:
    app()

"""Progress and notes, one way: the engine reports, the CLI draws.

A stage that takes long accepts `on_progress`, a ProgressCallback, and calls it as work gets
done: how much is done, of how much (None while unknown), and a short detail the bar shows beside
the count ("52 fps  10 events"). Notes and warnings go to the standard `logging` logger of the
module that has them (`logging.getLogger(__name__)`, under "cvtriage"). No engine module imports
Rich: the CLI draws the callbacks as progress bars and prints the log records (cvtriage.cli.app),
and a program calling the engine directly gets plain logging.
"""

from __future__ import annotations

from typing import Protocol


class ProgressCallback(Protocol):
    def __call__(self, done: int, total: int | None, detail: str = "") -> None: ...


def no_progress(done: int, total: int | None, detail: str = "") -> None:
    """The callback of a caller that shows no progress."""

"""The libraries underneath log each step (FiftyOne, Ultralytics); the CLI shows its own progress."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quieted(logger_name: str, level: int) -> Iterator[None]:
    """The named logger at `level` for the duration, then as it was."""
    logger = logging.getLogger(logger_name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)

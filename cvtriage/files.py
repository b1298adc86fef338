"""Files and folders written whole or not at all: a reader (or a resumed run) never sees a
half-written one. And the crash points where tests stop a process dead (`fault_point`)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Crash tests name a point in this variable; a process reaching that point ends at once, as kill -9
# would end it there (no cleanup, no exit handlers, buffered writes lost), so a test can check what
# a restart makes of exactly that state. Unset (always, outside tests): every point is a no-op.
FAULT_ENV = "CVTRIAGE_FAULT"
FAULT_EXIT_CODE = 86


@contextmanager
def replaced_on_success(path: Path) -> Iterator[Path]:
    """Yield a hidden partial path beside `path`; it replaces `path` only if the block completes.

    The partial keeps `path`'s suffix, so writers that choose a format by extension (matplotlib,
    OpenCV) still do. On any error the partial is removed and `path` is left as it was.
    """
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with replaced_on_success(path) as partial:
        partial.write_text(text)


def replaceable_dir(target: Path, marker: str, only: set[str] | None = None) -> bool:
    """Whether replace_dir may replace `target`: absent, an empty folder, or a folder an earlier
    run wrote (holding the file `marker`, and with `only`, nothing but those entries); never a
    file or a folder of the user's own."""
    if not target.exists():
        return True
    if not target.is_dir():
        return False
    entries = {entry.name for entry in target.iterdir()}
    return not entries or ((target / marker).is_file() and (only is None or entries <= only))


def replace_dir(staging: Path, target: Path) -> None:
    """Move the complete `staging` folder to `target`, replacing a previous results folder."""
    if not target.exists():
        staging.rename(target)
        return
    # Two renames (POSIX has no atomic swap of folders); the old folder is restored if the second fails.
    previous = target.with_name(f".{target.name}.previous-{uuid.uuid4().hex[:8]}")
    target.rename(previous)
    try:
        staging.rename(target)
    except BaseException:
        previous.rename(target)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def fault_point(name: str) -> None:
    """Stop this process dead here when CVTRIAGE_FAULT names this point (see FAULT_ENV)."""
    if os.environ.get(FAULT_ENV) == name:
        os._exit(FAULT_EXIT_CODE)

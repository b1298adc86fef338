"""What `cvtriage scan SOURCE...` scans: videos, folders of videos, globs and list files, expanded
into one list of sources in a stable order, each once."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from cvtriage.errors import CvtriageError

# What a folder is searched for (case-insensitive). A folder holding none of these but images is
# one source, an image sequence, as `cvtriage scan FOLDER` always took it.
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".webm", ".wmv"}
# A file with one of these suffixes lists sources, one path a line (blank lines and # comments
# ignored; relative paths are relative to the list file's folder).
LIST_SUFFIXES = {".txt", ".list"}


@dataclass
class Sources:
    paths: list[Path] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (as listed, one-line reason)
    # One plain argument (a file or an image folder): scanned as `cvtriage scan` always did.
    single: bool = False


def expand_sources(arguments: list[str | Path]) -> Sources:
    """Expand the command's SOURCE arguments. An argument naming nothing (a path that does not
    exist, a glob matching nothing) is a mistake in the command: one-line error. A list file's
    paths that do not exist are reported as missing; the rest are scanned."""
    if not arguments:
        raise CvtriageError("no SOURCE given: name videos, folders, globs or a list file")
    sources = Sources()
    for argument in map(str, arguments):
        path = Path(argument)
        if glob.has_magic(argument) and not path.exists():
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise CvtriageError(f"{argument}: no file matches this pattern")
            for match in map(Path, matches):
                sources.paths += _folder_sources(match) if match.is_dir() else [match]
        elif not path.exists():
            raise CvtriageError(f"{path}: file not found")
        elif path.is_dir():
            sources.paths += _folder_sources(path)
        elif path.suffix.lower() in LIST_SUFFIXES:
            _read_list(path, sources)
        else:
            sources.paths.append(path)
    sources.single = len(arguments) == 1 and len(sources.paths) == 1 and not sources.missing and (
        Path(str(arguments[0])) == sources.paths[0]
    )
    seen: set[Path] = set()
    unique = []
    for source in sources.paths:
        if source.resolve() not in seen:
            seen.add(source.resolve())
            unique.append(source)
    sources.paths = unique
    return sources


def _folder_sources(folder: Path) -> list[Path]:
    videos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    return videos or [folder]  # no videos: an image folder (probe_source says if it is not)


def _read_list(list_file: Path, sources: Sources) -> None:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CvtriageError(f"{list_file}: cannot read this list of sources ({error})") from None
    listed = found = 0
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        listed += 1
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        if not path.exists():
            sources.missing.append((entry, f"listed in {list_file} line {number}: file not found"))
            continue
        found += 1
        sources.paths += _folder_sources(path) if path.is_dir() else [path]
    # Not one path that exists: not a list of sources (notes, a log), or a list for elsewhere.
    if not found:
        what = f"none of its {listed} lines names a file that exists" if listed else "it names no source"
        raise CvtriageError(f"{list_file}: {what} (a list of sources: one path a line, # for comments)")

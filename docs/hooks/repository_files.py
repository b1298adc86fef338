"""MkDocs hook: publish the repository files the pages link to (benchmark scripts, shipped settings).

A page links to such a file by its path from the page, `../benchmarks/scan_speed.py`, so the link
works where the Markdown is read as it is (a repository browser, an editor). This hook adds those
files to the site under `repository/`, so the same link works in the built site too, and MkDocs
checks it like a link between pages: `mkdocs build --strict` fails on a script or settings file
that moved or was renamed.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel

PUBLISHED = ("benchmarks/*.py", "cvtriage/config/*.yaml")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    docs_dir = Path(config.docs_dir)
    root = docs_dir.parent
    for pattern in PUBLISHED:
        for path in sorted(root.glob(pattern)):
            relative = path.relative_to(root).as_posix()
            files.append(
                File(
                    # The path a page in docs/ links to; MkDocs resolves links against it.
                    f"../{relative}",
                    str(docs_dir),
                    config.site_dir,
                    config.use_directory_urls,
                    dest_uri=f"repository/{relative}",
                    # Paths starting with "." are excluded by default; these are meant to be published.
                    inclusion=InclusionLevel.INCLUDED,
                )
            )
    return files

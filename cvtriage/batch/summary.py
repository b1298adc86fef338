"""The batch's report: one table row per video, and batch.json."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from rich.table import Table

from cvtriage import __version__
from cvtriage.batch.types import BatchReport
from cvtriage.files import write_text_atomic


def summary_table(report: BatchReport) -> Table:
    failed = len(report.failed)
    title = f"Batch of {len(report.outcomes)} sources: {len(report.outcomes) - failed} done, {failed} failed"
    table = Table(title=title, title_justify="left", caption=f"{report.wall_time_s:.1f} s on {report.runner}",
                  caption_justify="left")  # fmt: skip
    for column in ("video", "status", "events", "frames inferred", "wall time"):
        table.add_column(column, justify="left" if column in ("video", "status") else "right")
    for outcome in report.outcomes:
        status = f"[red]{outcome.status}[/]" if outcome.failed else outcome.status
        inferred = f"{outcome.frames_inferred} of {outcome.frames_total}" if outcome.frames_total is not None else ""
        wall = f"{outcome.wall_time_s:.1f} s" if outcome.wall_time_s is not None else ""
        events = str(outcome.events) if outcome.events is not None else ""
        table.add_row(outcome.source.name, status, events, inferred, wall)
    return table


def failure_lines(report: BatchReport) -> list[str]:
    """One line per video that failed, with its reason (which usually starts with its path)."""
    lines = []
    for outcome in report.failed:
        named = outcome.reason.startswith(str(outcome.source))
        lines.append(f"{outcome.status}: {'' if named else f'{outcome.source}: '}{outcome.reason}")
    return lines


def write_batch_json(report: BatchReport) -> None:
    document = {
        "cvtriage_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runner": report.runner,
        "wall_time_s": report.wall_time_s,
        "failed": len(report.failed),
        "videos": [
            {
                "source": str(outcome.source),
                "status": outcome.status,
                "reason": outcome.reason or None,
                "events": outcome.events,
                "frames_inferred": outcome.frames_inferred,
                "frames_total": outcome.frames_total,
                "wall_time_s": outcome.wall_time_s,
                "results": str(outcome.out_dir) if outcome.out_dir is not None else None,
            }
            for outcome in report.outcomes
        ],
    }
    report.batch_json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report.batch_json, json.dumps(document, indent=2) + "\n")

"""The batch's report: the failures' lines, and batch.json."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from cvtriage import __version__
from cvtriage.batch.types import BatchReport
from cvtriage.files import write_text_atomic


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

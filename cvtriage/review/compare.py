"""Compare two scans of one video (typically before and after fine-tuning): which events both
found, which changed class, which were lost and which gained.

Matching is class-agnostic (a class change is a finding, not a miss) and uses each event's track,
the object's box in every inferred frame: two events are the same object when their frame spans
overlap and some box of one overlaps the other's box at the nearest frame, within half a second.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cvtriage import __version__
from cvtriage.boxes import Box, iou_matrix
from cvtriage.errors import CvtriageError
from cvtriage.files import replace_dir, replaceable_dir
from cvtriage.scan.outputs import write_csv
from cvtriage.scan.results import EVENTS_JSON, ScanRun, read_scan_run
from cvtriage.scan.timeline import clock, tick_step
from cvtriage.tracks import boxes_by_frame, shared_frames
from cvtriage.types import Event

COMPARE_CSV = "compare.csv"
COMPARE_JSON = "compare.json"
COMPARE_PNG = "compare.png"
DEFAULT_OUT = Path("runs/compare")
STATUSES = ("matched", "class changed", "lost", "gained")
STATUS_COLORS = {"matched": "tab:green", "class changed": "tab:orange", "lost": "tab:red", "gained": "tab:blue"}
COLUMNS = [
    "status", "a_id", "a_class", "a_first_s", "a_last_s", "a_peak",
    "b_id", "b_class", "b_first_s", "b_last_s", "b_peak", "iou",
]  # fmt: skip
# Where a scan's results went says nothing about how it detected.
IGNORED_SETTINGS = ("out", "dataset")


@dataclass(frozen=True)
class TrackSpan:
    """An event as matching compares it: its frames, and its track's box in each, in frame order."""

    first_frame: int
    last_frame: int
    boxes: dict[int, Box]

    def overlap(self, other: "TrackSpan") -> int:
        """Frames the two spans share."""
        return shared_frames(self, other)


@dataclass
class Comparison:
    a: ScanRun
    b: ScanRun
    min_iou: float
    max_frame_gap: int  # a box is compared with the other track's box at most this many frames away
    rows: list[dict[str, Any]]  # one per event of A or B, in order of first appearance
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {status: sum(row["status"] == status for row in self.rows) for status in STATUSES}

    def settings_differ(self) -> dict[str, list[Any]]:
        keys = sorted((set(self.a.settings) | set(self.b.settings)) - set(IGNORED_SETTINGS))
        return {
            key: [self.a.settings.get(key), self.b.settings.get(key)]
            for key in keys
            if self.a.settings.get(key) != self.b.settings.get(key)
        }


def load_run(folder: Path) -> ScanRun:
    """A scan results folder (<out>/<video-stem>/); a clear error if it is not one."""
    folder = Path(folder)
    if folder.is_dir() and not (folder / EVENTS_JSON).is_file():
        # A common slip: the scan's --out folder instead of the video's folder inside it.
        inside = sorted(str(sub) for sub in folder.iterdir() if (sub / EVENTS_JSON).is_file())
        if inside:
            raise CvtriageError(f"{folder}: holds no {EVENTS_JSON}; did you mean {' or '.join(inside[:3])}?")
    return read_scan_run(folder)


def model_name(run: ScanRun) -> str:
    return Path(str(run.settings.get("weights", "?"))).name


def track_span(event: Event) -> TrackSpan:
    """The event as matching compares it (whatever its class)."""
    return TrackSpan(event.first_frame, event.last_frame, boxes_by_frame(event))


def check_same_video(a: ScanRun, b: ScanRun) -> None:
    """Refuse scans of different videos: by content hash when both recorded it, else by name, length and size."""
    identity_a, identity_b = a.video.get("identity"), b.video.get("identity")
    if identity_a and identity_b:
        same = identity_a.get("sha256") == identity_b.get("sha256")
    else:
        same = all(a.video.get(key) == b.video.get(key) for key in ("name", "frame_count", "width", "height"))
    if not same:
        raise CvtriageError(
            f"{a.folder} and {b.folder} are scans of different videos: {_describe_video(a.video)} "
            f"vs {_describe_video(b.video)}"
        )


def _describe_video(video: dict[str, Any]) -> str:
    identity = video.get("identity") or {}
    digest = f", sha256 {identity['sha256'][:12]}" if identity.get("sha256") else ""
    return f"{video.get('name')} ({video.get('frame_count')} frames, {video.get('width')}x{video.get('height')}{digest})"


def best_track_iou(one: TrackSpan, other: TrackSpan, max_frame_gap: int) -> float:
    """The highest IoU of a box of either track with the other track's box at the nearest frame,
    counting only frames at most `max_frame_gap` apart (the two scans may infer different frames).
    Both spans' boxes are in frame order (`track_span`)."""
    if not one.boxes or not other.boxes:
        return 0.0
    best = 0.0
    for first, second in ((one, other), (other, one)):
        frames, boxes = np.fromiter(first.boxes, dtype=np.int64), list(first.boxes.values())
        other_frames, other_boxes = np.fromiter(second.boxes, dtype=np.int64), list(second.boxes.values())
        after = np.searchsorted(other_frames, frames).clip(max=len(other_frames) - 1)
        before = (after - 1).clip(min=0)
        nearest = np.where(np.abs(other_frames[before] - frames) <= np.abs(other_frames[after] - frames), before, after)
        for index in np.flatnonzero(np.abs(other_frames[nearest] - frames) <= max_frame_gap):
            best = max(best, float(iou_matrix(boxes[index], other_boxes[nearest[index]])[0, 0]))
    return best


def match_tracks(
    a: list[TrackSpan], b: list[TrackSpan], max_frame_gap: int, min_iou: float
) -> list[tuple[int, int, float]]:
    """One-to-one matches (index in a, index in b, IoU), whatever the classes: spans sharing frames
    whose `best_track_iou` reaches `min_iou`. Greedy: the pair sharing most frames first, then the
    higher IoU."""
    candidates = []
    for i, span_a in enumerate(a):
        for j, span_b in enumerate(b):
            shared = span_a.overlap(span_b)
            if shared:
                iou = best_track_iou(span_a, span_b, max_frame_gap)
                if iou >= min_iou:
                    candidates.append((shared, iou, i, j))
    used_a, used_b, matches = set(), set(), []
    for _, iou, i, j in sorted(candidates, key=lambda c: (-c[0], -c[1], c[2], c[3])):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matches.append((i, j, iou))
    return matches


def compare_runs(a: ScanRun, b: ScanRun, min_iou: float = 0.3) -> Comparison:
    """Match the events of two scans of the same video; one row per event of either."""
    check_same_video(a, b)
    max_frame_gap = round((a.video.get("fps") or 0) / 2)  # half a second of video
    events_a, events_b = list(a.events.values()), list(b.events.values())
    matches = match_tracks([track_span(e) for e in events_a], [track_span(e) for e in events_b], max_frame_gap, min_iou)
    rows = []
    for i, j, iou in matches:
        status = "matched" if events_a[i].class_name == events_b[j].class_name else "class changed"
        rows.append(_row(status, events_a[i], events_b[j], iou))
    matched_a, matched_b = {i for i, _, _ in matches}, {j for _, j, _ in matches}
    rows += [_row("lost", event, None, None) for i, event in enumerate(events_a) if i not in matched_a]
    rows += [_row("gained", None, event, None) for j, event in enumerate(events_b) if j not in matched_b]
    rows.sort(key=lambda row: (min(t for t in (row["a_first_s"], row["b_first_s"]) if t is not None),
                               row["a_id"] or 0, row["b_id"] or 0))  # fmt: skip
    return Comparison(a, b, min_iou, max_frame_gap, rows)


def _row(status: str, a: Event | None, b: Event | None, iou: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"status": status}
    for side, event in (("a", a), ("b", b)):
        row[f"{side}_id"] = event.event_id if event else None
        row[f"{side}_class"] = event.class_name if event else None
        row[f"{side}_first_s"] = round(event.first_time_s, 3) if event else None
        row[f"{side}_last_s"] = round(event.last_time_s, 3) if event else None
        row[f"{side}_peak"] = round(event.peak_confidence, 4) if event else None
    row["iou"] = None if iou is None else round(iou, 3)
    return row


def default_out_dir(a: ScanRun, b: ScanRun) -> Path:
    """runs/compare/<video-stem>-<A's scan folder>-vs-<B's scan folder>."""
    stem = Path(str(a.video["name"])).stem
    return DEFAULT_OUT / f"{stem}-{a.folder.parent.name}-vs-{b.folder.parent.name}"


def compare_scans(run_a: Path, run_b: Path, out: Path | None = None, min_iou: float = 0.3) -> Comparison:
    """Compare two scan results folders and write compare.csv/json/png to `out` (default_out_dir)."""
    if Path(run_a).resolve() == Path(run_b).resolve():
        raise CvtriageError(f"{run_b}: the same results folder as A (compare two scans of one video)")
    a, b = load_run(run_a), load_run(run_b)
    comparison = compare_runs(a, b, min_iou)
    comparison.outputs = write_compare_outputs(comparison, default_out_dir(a, b) if out is None else Path(out))
    return comparison


def write_compare_outputs(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """compare.csv, compare.json and compare.png, written into a hidden sibling folder and renamed
    to `out_dir` when complete; a previous comparison there is replaced, any other folder refused."""
    out_dir = Path(out_dir).resolve()
    if not replaceable_dir(out_dir, COMPARE_JSON):
        raise CvtriageError(f"{out_dir}: exists and is not a cvtriage compare folder; choose another output folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        cells = (["" if row[column] is None else row[column] for column in COLUMNS] for row in comparison.rows)
        write_csv(staging / COMPARE_CSV, COLUMNS, cells)
        (staging / COMPARE_JSON).write_text(json.dumps(_document(comparison), indent=2) + "\n", encoding="utf-8")
        write_compare_figure(staging / COMPARE_PNG, comparison)
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"out_dir": out_dir, "csv": out_dir / COMPARE_CSV, "json": out_dir / COMPARE_JSON, "png": out_dir / COMPARE_PNG}


def _document(comparison: Comparison) -> dict[str, Any]:
    video = comparison.a.video
    return {
        "cvtriage_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "video": {key: video.get(key) for key in ("name", "path", "width", "height", "fps", "frame_count", "duration_s")},
        "min_iou": comparison.min_iou,
        "max_frame_gap": comparison.max_frame_gap,
        "runs": {
            side: {"folder": str(run.folder), "weights": run.settings.get("weights"), "events": len(run.events)}
            for side, run in (("a", comparison.a), ("b", comparison.b))
        },
        "settings_differ": comparison.settings_differ(),
        "counts": comparison.counts,
        "rows": comparison.rows,
    }


def write_compare_figure(path: Path, comparison: Comparison) -> None:
    """Two timelines sharing the time axis, A above B: a row per class, a bar per event coloured by status."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    sides = [
        ("A", comparison.a, {row["a_id"]: row for row in comparison.rows if row["a_id"] is not None}),
        ("B", comparison.b, {row["b_id"]: row for row in comparison.rows if row["b_id"] is not None}),
    ]
    classes = [sorted({event.class_name for event in run.events.values()}) for _, run, _ in sides]
    duration = float(comparison.a.video.get("duration_s") or 0)
    end_s = max([duration, 1.0, *(event.last_time_s for _, run, _ in sides for event in run.events.values())])
    long = end_s >= 3600
    fig = Figure(figsize=(12, 2.4 + 0.4 * sum(max(len(names), 1) for names in classes)), dpi=100, layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, height_ratios=[max(len(names), 1) for names in classes])
    min_width = end_s / 400  # one-frame events would be invisible as zero-width bars
    for ax, (label, run, row_of), names in zip(axes, sides, classes):
        for event in run.events.values():
            row, lane = row_of[event.event_id], names.index(event.class_name)
            color = STATUS_COLORS[row["status"]]
            width = max(event.last_time_s - event.first_time_s, min_width)
            ax.broken_barh([(event.first_time_s, width)], (lane - 0.3, 0.6), facecolors=color, alpha=0.6, edgecolor=color)
            if row["status"] == "class changed" and label == "B":
                ax.text(event.first_time_s, lane, f" was {row['a_class']}", va="center", fontsize=7, clip_on=True)
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(-0.6, max(len(names), 1) - 0.4)
        ax.invert_yaxis()
        where = f"{run.folder.parent.name}/{run.folder.name}"
        ax.set_title(f"{label}: {model_name(run)} ({len(run.events)} events, {where})", loc="left", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if not run.events:
            ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center", color="0.4")
    axes[1].set_xlim(0, end_s)
    axes[1].xaxis.set_major_locator(MultipleLocator(tick_step(end_s)))
    axes[1].xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds, long=long)))
    axes[1].set_xlabel("video time (h:mm:ss)" if long else "video time (mm:ss)")
    fig.legend(
        handles=[Patch(color=color, alpha=0.6, label=status) for status, color in STATUS_COLORS.items()],
        loc="outside lower center", ncols=len(STATUS_COLORS), fontsize=8,
    )
    counts = ", ".join(f"{count} {status}" for status, count in comparison.counts.items())
    fig.suptitle(f"{comparison.a.video['name']}: {model_name(comparison.a)} vs {model_name(comparison.b)}: {counts}")
    fig.savefig(path)

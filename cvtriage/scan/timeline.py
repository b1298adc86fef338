"""The timeline: a scan's events along the video as a picture, and video times as people read them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cvtriage.types import Event, FrameDetections, VideoInfo


def format_timecode(seconds: float) -> str:
    """`HH:MM:SS.mmm`, rounded to the millisecond (62.3454 -> 00:01:02.345)."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def clock(seconds: float, long: bool = False) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if long else f"{minutes + 60 * hours:02d}:{secs:02d}"


def tick_step(end_s: float) -> float:
    """A round tick interval (1 s .. 1 h) giving at most about 12 ticks."""
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]
    return next((step for step in steps if end_s / step <= 12), end_s / 12)


def best_time_s(event: Event, video: VideoInfo, detections_by_frame: dict[int, FrameDetections]) -> float:
    """The time of the event's keyframe: its frame's own time where it was inferred."""
    frame = detections_by_frame.get(event.best_frame)
    return frame.time_s if frame is not None else video.time_of(event.best_frame)


def write_timeline(
    path: Path,
    video: VideoInfo,
    events: list[Event],
    detections_by_frame: dict[int, FrameDetections],
    bad_ranges: Iterable[tuple[int, int]] = (),
) -> None:
    """A PNG of events along the video (draw_timeline)."""
    draw_timeline(video, events, detections_by_frame, bad_ranges).savefig(path)


def draw_timeline(
    video: VideoInfo,
    events: list[Event],
    detections_by_frame: dict[int, FrameDetections],
    bad_ranges: Iterable[tuple[int, int]] = (),
):
    """The timeline's matplotlib Figure: one row per class, a bar per event from its first to its
    last time, a marker at its keyframe, undecodable frames hatched."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    end_s = max([video.duration_s, 1.0, *(event.last_time_s for event in events)])
    classes = sorted({(event.class_id, event.class_name) for event in events})
    fig = Figure(figsize=(12, 1.6 + 0.45 * max(len(classes), 1)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    # One-frame events would be invisible as zero-width bars.
    min_width = end_s / 400
    for row, (class_id, class_name) in enumerate(classes):
        class_events = [event for event in events if event.class_id == class_id]
        color = f"C{row % 10}"
        spans = [(e.first_time_s, max(e.last_time_s - e.first_time_s, min_width)) for e in class_events]
        ax.broken_barh(spans, (row - 0.3, 0.6), facecolors=color, alpha=0.55, edgecolor=color, linewidth=0.8)
        best_times = [best_time_s(e, video, detections_by_frame) for e in class_events]
        ax.plot(best_times, [row] * len(best_times), linestyle="none", marker="|", markersize=11, color="black")
    undecodable = {"facecolor": "0.8", "edgecolor": "0.5", "hatch": "//", "linewidth": 0}
    for first, last in bad_ranges:
        ax.axvspan(video.time_of(first), video.time_of(last + 1), **undecodable)
    if bad_ranges:
        ax.legend(handles=[Patch(**undecodable, label="undecodable frames")], loc="upper right", fontsize=8)

    ax.set_yticks(range(len(classes)), [f"{name} ({sum(e.class_id == cid for e in events)})" for cid, name in classes])
    ax.set_ylim(-0.6, max(len(classes), 1) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, end_s)
    ax.xaxis.set_major_locator(MultipleLocator(tick_step(end_s)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds, long=end_s >= 3600)))
    ax.set_xlabel("video time (h:mm:ss)" if end_s >= 3600 else "video time (mm:ss)")
    ax.grid(axis="x", alpha=0.3)
    if not events:
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=12)
    count = f"{len(events)} event" + ("" if len(events) == 1 else "s")
    ax.set_title(f"{Path(video.path).name}: {count} in {clock(video.duration_s, long=end_s >= 3600)}")
    return fig

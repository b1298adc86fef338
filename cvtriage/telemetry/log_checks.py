"""Does a flight log belong to its video? What the video file says (its length, frame rate,
recording date, the camera its metadata names) against what the log says; each disagreement is
one warning naming what disagrees. The positions are still used: a warning, not an error.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from pathlib import Path

from cvtriage.telemetry.camera import DjiCamera
from cvtriage.telemetry.srt import SrtLog
from cvtriage.types import VideoInfo

# The video's creation time and the log's clock may differ by a time zone (DJI writes local time
# into files that say UTC) and by the flight: more than this apart, they are two days.
DATE_SLACK = timedelta(hours=26)
RATE_SLACK = 0.1  # a per-frame log's rate may differ from the video's frame rate by this share
WIDER_SLACK = 0.85  # a log's focal length below this share of the camera's widest is another lens


def video_metadata(path: Path) -> dict[str, str]:
    """The container's and video stream's metadata tags (creation_time, encoder, ...); {} when unreadable."""
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    return _video_metadata(path, (stat.st_size, stat.st_mtime_ns) if stat else None)


@functools.lru_cache(maxsize=16)
def _video_metadata(path: Path, stamp: tuple | None) -> dict[str, str]:
    import av

    if stamp is None:
        return {}
    try:
        with av.open(str(path)) as container:
            tags = dict(container.metadata)
            if container.streams.video:
                tags.update({f"video:{key}": value for key, value in container.streams.video[0].metadata.items()})
            return tags
    except (av.FFmpegError, OSError):
        return {}


def recorded_at(metadata: dict[str, str]) -> datetime | None:
    """The video's creation time (naive, as written), when its metadata has one."""
    text = metadata.get("creation_time") or metadata.get("video:creation_time")
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def log_disagreements(log: SrtLog, video: VideoInfo, metadata: dict[str, str], camera: DjiCamera | None) -> list[str]:
    """One line for each way the log disagrees with the video."""
    name, problems = log.path.name, []
    located = log.positioned
    first, last = located[0], located[-1]
    slack = max(2 * log.interval_s, 1.0)
    duration = video.duration_s
    if duration > 0 and last.end_s < duration - slack:
        problems.append(
            f"covers {first.start_s:.1f}-{last.end_s:.1f} s of the {duration:.1f} s video: the last "
            f"{duration - last.end_s:.1f} s have no positions (a shorter log, or another video's?)"
        )
    elif duration > 0 and last.start_s > duration + max(slack, 2.0):
        problems.append(f"runs {last.start_s - duration:.1f} s past the {duration:.1f} s video's end (another video's log?)")
    clock = next((record.clock for record in log.records if record.clock is not None), None)
    recorded = recorded_at(metadata)
    if clock is not None and recorded is not None and abs(clock - recorded) > DATE_SLACK:
        problems.append(
            f"logged on {clock:%Y-%m-%d}, the video was recorded on {recorded:%Y-%m-%d} (another flight's log?)"
        )
    if log.interval_s < 0.2 and video.fps > 0 and abs(1 / log.interval_s - video.fps) > RATE_SLACK * video.fps:
        problems.append(
            f"logs {1 / log.interval_s:.0f} subtitles a second, the video has {video.fps:.0f} frames a second "
            "(another drone's or another recording's log?)"
        )
    focal = next((record.position.focal_35mm for record in located if record.position.focal_35mm), None)
    if camera is not None and focal is not None and focal < WIDER_SLACK * camera.focal_35mm:
        problems.append(
            f"its lens ({focal:g} mm, 35 mm-equivalent) is wider than the {camera.name}'s that the video names "
            f"({camera.focal_35mm:g} mm): another drone's log?"
        )
    return [f"{name}: {problem}" for problem in problems]

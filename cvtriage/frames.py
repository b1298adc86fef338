"""Frames: streaming decode of a video file or an image folder, and frame sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VideoInfo:
    """What is known of a source before and after decoding it."""

    path: Path
    kind: str  # "video" or "images"
    width: int
    height: int
    fps: float  # frames per second of video time (images: 1.0 unless configured)
    frame_count: int  # frames actually decodable (after a scan), or the container's claim before
    duration_s: float

"""Test fixtures for the scan: videos of coloured squares moving over a grey field, and a tiny
deterministic detector that finds them, with the Ultralytics `predict` interface.

A random-init YOLO finds nothing meaningful, so detection-dependent logic (sampling,
coarse-to-fine, tracking, resume) is tested on inputs whose right answer is known exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Class id -> the BGR colour its squares are drawn in; the detector finds each colour.
COLOURS = {0: (40, 40, 230), 1: (40, 220, 40)}
NAMES = {0: "red square", 1: "green square"}


@dataclass(frozen=True)
class Square:
    class_id: int
    first_frame: int
    last_frame: int  # inclusive
    x: float  # top-left at first_frame, pixels
    y: float
    vx: float = 0.0  # pixels per frame
    vy: float = 0.0
    side: int = 16

    def box_at(self, frame: int) -> tuple[int, int, int, int]:
        x = round(self.x + self.vx * (frame - self.first_frame))
        y = round(self.y + self.vy * (frame - self.first_frame))
        return x, y, x + self.side, y + self.side


def render(squares: list[Square], frame: int, width: int, height: int) -> np.ndarray:
    import cv2

    image = np.full((height, width, 3), 110, np.uint8)
    for square in squares:
        if square.first_frame <= frame <= square.last_frame:
            x1, y1, x2, y2 = square.box_at(frame)
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), COLOURS[square.class_id], -1)
    return image


def write_square_video(
    path: Path, squares: list[Square], frames: int, width: int = 320, height: int = 192, fps: float = 30.0
) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in range(frames):
        writer.write(render(squares, frame, width, height))
    writer.release()
    return path


def vfr_times_ms(frames: int, seed: int = 0) -> list[int]:
    """Presentation times of a variable-frame-rate video: about 60 fps for the first half, about
    10 fps after, with jitter (as a phone that drops its rate in low light)."""
    rng = np.random.default_rng(seed)
    durations = np.where(np.arange(frames) < frames // 2, rng.integers(14, 20, frames), rng.integers(80, 120, frames))
    return np.concatenate([[0], np.cumsum(durations[:-1])]).tolist()


def write_h264_square_video(
    path: Path, squares: list[Square], times_ms: list[int], options: dict[str, str] | None = None,
    width: int = 320, height: int = 192,
) -> Path:
    """The squares as h264 in mp4 (libx264 through PyAV), frame i shown at times_ms[i]: irregular
    times make a variable-frame-rate video. `options` go to the encoder ({"bf": "3", "g": "120"}:
    B-frames and long GOPs)."""
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = options or {}
        for frame_index, time_ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(render(squares, frame_index, width, height), format="bgr24")
            frame.pts, frame.time_base = time_ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_truncated_avi(path: Path, frames: int = 30) -> Path:
    """A video cut in half: MJPG in AVI streams without its index, so the cut file still opens
    (an mp4 keeps its index at the end and would not open at all)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for frame in range(frames):
        writer.write(render([Square(0, 0, frames, 10, 10, vx=2)], frame, 96, 64))
    writer.release()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


class SquareDetector:
    """Finds the coloured squares: one box per connected blob of a class colour, score from its size.

    Same interface as an Ultralytics YOLO for what the scan uses: `names`, `predict(list of BGR
    images, conf=, classes=, ...)` -> a list of `ultralytics.engine.results.Results`.
    """

    names = NAMES
    task = "detect"

    def __init__(self):
        self.calls: list[int] = []  # images per predict call

    def predict(self, images, conf=0.25, classes=None, **_ignored):
        import cv2
        import torch
        from ultralytics.engine.results import Results

        self.calls.append(len(images))
        results = []
        for image in images:
            rows = []
            for class_id, colour in COLOURS.items():
                if classes is not None and class_id not in classes:
                    continue
                distance = np.abs(image.astype(np.int16) - np.array(colour, np.int16)).max(axis=2)
                mask = (distance < 60).astype(np.uint8)
                count, _, blobs, _ = cv2.connectedComponentsWithStats(mask)
                for x, y, w, h, area in blobs[1:count]:
                    if min(w, h) < 4:  # compression fringes at a moving square's edges
                        continue
                    score = min(0.99, 0.5 + area / 1000)
                    if score >= conf:
                        rows.append([x, y, x + w, y + h, score, class_id])
            boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
            results.append(Results(image, path="", names=self.names, boxes=boxes))
        return results


class SlowSquareDetector(SquareDetector):
    """SquareDetector that takes `delay` seconds a call and leaves a file named after its process
    id in `pid_dir`: a test knows which processes are scanning, and has time to kill one."""

    def __init__(self, delay: float, pid_dir: str):
        super().__init__()
        self.delay = delay
        self.pid_file = Path(pid_dir) / str(os.getpid())

    def predict(self, images, **kwargs):
        import time

        self.pid_file.touch()
        time.sleep(self.delay)
        return super().predict(images, **kwargs)


class DyingSquareDetector(SquareDetector):
    """SquareDetector whose process dies of SIGKILL at its first frame `width` pixels wide, after
    leaving a file named after its process id in `pid_dir`: a video no worker survives, each
    attempt at it counted."""

    def __init__(self, width: int, pid_dir: str):
        super().__init__()
        self.width = width
        self.pid_dir = Path(pid_dir)

    def predict(self, images, **kwargs):
        import signal

        if any(image.shape[1] == self.width for image in images):
            (self.pid_dir / str(os.getpid())).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().predict(images, **kwargs)

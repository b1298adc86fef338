"""Frames: streaming decode of a video file or an image folder, and frame sampling.

Two ways to read a source, both with memory bounded whatever its length or resolution:
- `PrefetchedFrames`: one sequential pass in a decoder thread that hands the sampled frames to
  the caller through a bounded queue (skipped frames are only grabbed, never converted), so
  decoding overlaps inference.
- `FrameReader`: targeted reads for the coarse-to-fine stage and the keyframes; it moves forward
  by grabbing, seeks for long jumps, and keeps the last few frames it passed in a small cache.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvtriage.dataset import IMAGE_SUFFIXES
from cvtriage.errors import CvtriageError

# Jumping further ahead than this seeks instead of grabbing: a seek decodes from the previous
# keyframe, and h264 keyframes are at most ~250 frames apart with common encoder settings.
SEEK_AHEAD_FRAMES = 250


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

    def time_of(self, frame_index: int) -> float:
        return frame_index / self.fps


@dataclass(frozen=True)
class BadRange:
    """Frames the source claims but that could not be decoded (inclusive range)."""

    first: int
    last: int
    reason: str

    def __str__(self) -> str:
        span = f"frame {self.first}" if self.first == self.last else f"frames {self.first}-{self.last}"
        return f"{span}: {self.reason}"


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# Bytes read from each end of a video for its identity: enough to tell another recording (or a
# re-encode) apart, without hashing gigabytes.
IDENTITY_BYTES = 1 << 20


def source_identity(info: VideoInfo) -> dict | None:
    """What tells this source from another that took its place: size and a hash of both ends of a
    video file; names, sizes and the same hash over an image folder's files. None when the
    source cannot be read (any more)."""
    try:
        files = image_files(info.path) if info.kind == "images" else [Path(info.path)]
        digest = hashlib.sha256()
        total = 0
        for path in files:
            size = path.stat().st_size
            total += size
            digest.update(f"{path.name}:{size}:".encode())
            with open(path, "rb") as handle:
                digest.update(handle.read(IDENTITY_BYTES))
                if size > 2 * IDENTITY_BYTES:
                    handle.seek(size - IDENTITY_BYTES)
                    digest.update(handle.read(IDENTITY_BYTES))
    except OSError:
        return None
    return {"files": len(files), "size_bytes": total, "sha256": digest.hexdigest()}


def probe_source(path: Path, images_fps: float = 1.0) -> VideoInfo:
    """Open the source once to learn its size, rate and (claimed) length; a bad source raises."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise CvtriageError(f"{path}: file not found")
    if path.is_dir():
        images = image_files(path)
        if not images:
            raise CvtriageError(f"{path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        first = next((image for image in map(_read_image, images) if image is not None), None)
        if first is None:
            raise CvtriageError(f"{path}: none of the {len(images)} images can be decoded")
        height, width = first.shape[:2]
        return VideoInfo(path, "images", width, height, images_fps, len(images), len(images) / images_fps)

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise CvtriageError(f"{path}: not a video OpenCV can read (unknown format, or truncated/corrupt file)")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise CvtriageError(f"{path}: video has no decodable frames")
        height, width = frame.shape[:2]
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and fps > 0 else 30.0  # some containers omit the rate
        claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # Containers may claim 0 or a wrong count; the scan learns the true one as it decodes.
        count = max(claimed, 1)
        return VideoInfo(path, "video", width, height, fps, count, count / fps)
    finally:
        capture.release()


def sample_step(info: VideoInfo, every: int | None, fps: float | None) -> int:
    """Frames between two sampled frames: `every` directly, or the video rate over the sampling rate."""
    if every is not None:
        return every
    if fps is not None:
        return max(1, round(info.fps / fps))
    return 1


def _read_image(path: Path) -> np.ndarray | None:
    import cv2

    try:
        return cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


class FrameSource:
    """A video file or an image folder, read in frame-index order."""

    def __init__(self, info: VideoInfo):
        self.info = info
        self.images = image_files(info.path) if info.kind == "images" else []
        self.decoded_count: int | None = None  # known once frames() has run to the end

    def frames(self, wanted: Callable[[int], bool], stop: threading.Event | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
        """Yield (index, frame) for the wanted indices in order; frame is None where it cannot be decoded."""
        if self.info.kind == "images":
            for index, image_path in enumerate(self.images):
                if stop is not None and stop.is_set():
                    return
                if wanted(index):
                    yield index, _read_image(image_path)
            self.decoded_count = len(self.images)
            return
        import cv2

        capture = cv2.VideoCapture(str(self.info.path))
        try:
            index = 0
            while not (stop is not None and stop.is_set()):
                if not capture.grab():
                    break
                if wanted(index):
                    ok, frame = capture.retrieve()
                    yield index, frame if ok else None
                index += 1
            self.decoded_count = index
        finally:
            capture.release()

    def bad_ranges(self, decoded_count: int) -> list[BadRange]:
        """Claimed frames past the last decodable one (a truncated or corrupt tail)."""
        if self.info.kind == "video" and decoded_count < self.info.frame_count:
            return [BadRange(decoded_count, self.info.frame_count - 1, "could not be decoded (video truncated or corrupt?)")]
        return []

    def reader(self, cache_frames: int = 1) -> "FrameReader":
        return FrameReader(self, cache_frames)


class PrefetchedFrames:
    """A decoder thread filling a bounded queue with the wanted frames, so decode overlaps inference."""

    _END = object()

    def __init__(self, source: FrameSource, wanted: Callable[[int], bool], queue_size: int):
        self.source = source
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self.decoded_count: int | None = None
        self._thread = threading.Thread(target=self._decode, args=(wanted,), daemon=True, name="cvtriage-decode")

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self, wanted: Callable[[int], bool]) -> None:
        try:
            for item in self.source.frames(wanted, self._stop):
                if not self._put(item):
                    return
            self.decoded_count = self.source.decoded_count
            self._put(self._END)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(error)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray | None]]:
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class FrameReader:
    """Random access by frame index, cheap when moving forward a little at a time.

    The last `cache_frames` frames passed on the way to a target are kept (decoded), so looking
    back a few frames (bisection between two probes) costs nothing.
    """

    source: FrameSource
    cache_frames: int = 1
    _capture: object = None
    _next_index: int = 0  # index of the frame the next grab() returns
    _cache: OrderedDict = field(default_factory=OrderedDict)

    def read(self, index: int) -> np.ndarray | None:
        if index in self._cache:
            return self._cache[index]
        if self.source.info.kind == "images":
            if not 0 <= index < len(self.source.images):
                return None
            return self._remember(index, _read_image(self.source.images[index]))
        import cv2

        if self._capture is None:
            self._capture = cv2.VideoCapture(str(self.source.info.path))
        if index < self._next_index or index - self._next_index > SEEK_AHEAD_FRAMES:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._next_index = index
        frame = None
        while self._next_index <= index:
            if not self._capture.grab():
                return None
            passing = self._next_index
            self._next_index += 1
            if index - passing < self.cache_frames:
                ok, decoded = self._capture.retrieve()
                frame = self._remember(passing, decoded if ok else None)
        return frame

    def _remember(self, index: int, frame: np.ndarray | None) -> np.ndarray | None:
        self._cache[index] = frame
        while len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._cache.clear()

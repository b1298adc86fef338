"""Frames: streaming decode of a video file or an image folder, frame sampling, and time.

Time is the container's: a video frame's time is its presentation timestamp (PyAV reads them
from the container), not its index over a frame rate, so variable-frame-rate footage gets right
event times. Frame N is the N-th frame sequential decoding yields, and every read identifies a
decoded frame by its timestamp, so a read after a seek returns exactly that frame, also in h264
with B-frames and long GOPs (OpenCV's frame-number seek can land elsewhere there). Image folders
run at their configured rate.

Two ways to read a source, both with memory bounded whatever its length or resolution:
- `PrefetchedFrames`: one sequential pass in a decoder thread that hands the sampled frames to
  the caller through a bounded queue (skipped frames are only decoded, never converted), so
  decoding overlaps inference; for a dense scan, other threads convert the frames meanwhile.
- `FrameReader`: targeted reads for the coarse-to-fine stage and the keyframes; it moves forward
  by decoding, seeks for long jumps, and keeps the last few frames it passed in a small cache.

PyAV is this module's adapter to video containers: nothing else in cvtriage imports it.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cvtriage.errors import CvtriageError
from cvtriage.image_files import IMAGE_SUFFIXES, image_files
from cvtriage.types import BadRange, FrameTimes, VideoInfo

if TYPE_CHECKING:
    import av

# Jumping further ahead than this seeks instead of decoding on: a seek decodes from the previous
# keyframe, and h264 keyframes are at most ~250 frames apart with common encoder settings.
SEEK_AHEAD_FRAMES = 250
# A seek that lands after its target (demuxers index keyframes by decode time, which precedes
# presentation time with B-frames) or on a picture that needs frames before its keyframe (an
# open GOP) is retried this many frames further back, doubling each time.
SEEK_BACK_FRAMES = 16


# A wanted frame's BGR image, made when called (None: the frame cannot be decoded).
Picture = Callable[[], "np.ndarray | None"]


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
    """Open the source once to learn its size, rate, (claimed) length and frame times; a bad source raises."""
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

    container, stream = _open_video(path)
    try:
        times = _frame_times(container, stream)
        # Containers may claim 0 or a wrong count; the scan learns the true one as it decodes.
        count = max(stream.frames, len(times) if times is not None else 0, 1)
        rate = stream.average_rate or stream.guessed_rate  # frames over duration, or the codec's rate
        fps = float(rate) if rate else 30.0  # some containers omit the rate
    finally:
        container.close()
    container, stream = _open_video(path)  # opened again rather than rewound: not every format seeks
    try:
        first = next((frame for _, frame in _decoded(container, stream, times)), None)
    finally:
        container.close()
    if first is None:
        raise CvtriageError(f"{path}: video has no decodable frames")
    height, width = _bgr(first).shape[:2]
    return VideoInfo(path, "video", width, height, fps, count, 0.0, times).with_frame_count(count)


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
        for index, image in self.pictures(wanted, stop):
            yield index, image()

    def pictures(self, wanted: Callable[[int], bool], stop: threading.Event | None = None) -> Iterator[tuple[int, Picture]]:
        """`frames` with each BGR image still to be made: (index, a function that makes it, None
        where the frame cannot be decoded). Making it (converting a decoded video frame, reading
        an image file) is the costly part of a wanted frame, so a caller may do it on other threads."""
        if self.info.kind == "images":
            for index, image_path in enumerate(self.images):
                if stop is not None and stop.is_set():
                    return
                if wanted(index):
                    yield index, functools.partial(_read_image, image_path)
            self.decoded_count = len(self.images)
            return
        container, stream = _open_video(self.info.path)
        try:
            index = 0  # the next index to yield
            for found, frame in _decoded(container, stream, self.info.frame_times):
                if stop is not None and stop.is_set():
                    return
                for missing in range(index, found):  # frames the decoder did not return
                    if wanted(missing):
                        yield missing, _undecodable
                if wanted(found):  # only wanted frames are converted to BGR images
                    yield found, functools.partial(_bgr, frame)
                index = found + 1
            self.decoded_count = index
        finally:
            container.close()

    def bad_ranges(self, decoded_count: int) -> list[BadRange]:
        """Claimed frames past the last decodable one (a truncated or corrupt tail)."""
        if self.info.kind == "video" and decoded_count < self.info.frame_count:
            return [BadRange(decoded_count, self.info.frame_count - 1, "could not be decoded (video truncated or corrupt?)")]
        return []

    def reader(self, cache_frames: int = 1) -> "FrameReader":
        return FrameReader(self, cache_frames)


class PrefetchedFrames:
    """A decoder thread filling a bounded queue with the wanted frames, so decode overlaps inference.

    With `converters`, that many more threads turn the decoded frames into BGR images (PyAV's
    conversion lets go of the GIL), in order, while the decoder thread decodes on: for a scan that
    wants every frame, where converting each one costs about as much as decoding it."""

    _END = object()

    def __init__(self, source: FrameSource, wanted: Callable[[int], bool], queue_size: int, converters: int = 0):
        self.source = source
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self.decoded_count: int | None = None
        self._converters = ThreadPoolExecutor(converters, thread_name_prefix="cvtriage-convert") if converters else None
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
            for index, image in self.source.pictures(wanted, self._stop):
                made = self._converters.submit(image) if self._converters else image()
                if not self._put((index, made)):
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
                index, image = item
                yield index, image.result() if isinstance(image, Future) else image
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._converters is not None:
            self._converters.shutdown(wait=True, cancel_futures=True)


@dataclass
class FrameReader:
    """Random access by frame index, cheap when moving forward a little at a time.

    The last `cache_frames` frames passed on the way to a target are kept (decoded), so looking
    back a few frames (bisection between two probes) costs nothing.
    """

    source: FrameSource
    cache_frames: int = 1
    _container: "av.container.InputContainer | None" = None
    _decoder: Iterator[tuple[int, "av.VideoFrame"]] | None = None  # (index, frame) from the last seek on
    _next_index: int = 0  # index of the frame the decoder yields next (at the earliest)
    _cache: OrderedDict = field(default_factory=OrderedDict)

    def read(self, index: int) -> np.ndarray | None:
        if index in self._cache:
            return self._cache[index]
        if self.source.info.kind == "images":
            if not 0 <= index < len(self.source.images):
                return None
            return self._remember(index, _read_image(self.source.images[index]))
        times = self.source.info.frame_times
        if index < 0 or (times is not None and index >= len(times)):
            return None  # no such frame in the container
        if self._decoder is None or index < self._next_index or index - self._next_index > SEEK_AHEAD_FRAMES:
            self._seek(index)
        for found, frame in self._decoder:
            self._next_index = found + 1
            if index - found < self.cache_frames:
                self._remember(found, _bgr(frame))
            if found >= index:
                return self._cache.get(index)  # None when the decoder skipped this frame
        self._next_index = index + 1  # past the end: any read from here on seeks
        return None

    def _seek(self, index: int) -> None:
        """Position the decoder at or before frame `index`, after a keyframe whose pictures all
        decode as in a sequential pass (so the frame decoded at `index` is the sequential one)."""
        import av

        if self._container is None:
            self._container = _open_video(self.source.info.path)[0]
        container = self._container
        stream = container.streams.video[0]
        times = self.source.info.frame_times
        back = 0
        while times is not None and 0 < index < len(times):
            start = max(0, index - back)
            try:
                container.seek(int(times.pts[start]), stream=stream, backward=True)
            except av.error.FFmpegError:  # a format that cannot seek
                break
            decoder = _decoded(container, stream, times)
            first = next(decoder, None)
            if first is not None and first[0] <= index and first[1].key_frame:
                self._decoder, self._next_index = itertools.chain([first], decoder), first[0]
                return
            if start == 0:
                break
            back = max(2 * back, SEEK_BACK_FRAMES)
        # From the start (opened again: not every format seeks): frame 0, a container without
        # timestamps, or a target no seek reached.
        container.close()
        self._container, stream = _open_video(self.source.info.path)
        self._decoder, self._next_index = _decoded(self._container, stream, times), 0

    def _remember(self, index: int, frame: np.ndarray | None) -> np.ndarray | None:
        self._cache[index] = frame
        while len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return frame

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._decoder = None
        self._cache.clear()


# --- PyAV: the adapter to video containers --------------------------------------------------------


def _open_video(path: Path) -> tuple["av.container.InputContainer", "av.video.stream.VideoStream"]:
    import av

    try:
        # Metadata that is not UTF-8 (some cameras' tags) must not make the video unreadable.
        container = av.open(str(path), metadata_errors="replace")
    except (av.error.FFmpegError, OSError):
        raise CvtriageError(f"{path}: not a video FFmpeg can read (unknown format, or truncated/corrupt file)") from None
    if not container.streams.video:
        container.close()
        raise CvtriageError(f"{path}: holds no video stream")
    stream = container.streams.video[0]
    # Frame and slice threads: as fast as OpenCV's decoder on 2 cores (measured); PyAV's default
    # (slice threads only) decodes at a third of that speed.
    stream.thread_type = "AUTO"
    return container, stream


def _frame_times(container: "av.container.InputContainer", stream: "av.video.stream.VideoStream") -> FrameTimes | None:
    """The presentation timestamps of the stream's frames, read from the container's packets (no
    decoding: 0.25 s for a 10-minute 1 GB 1080p file, measured). Decoders yield frames in presentation order,
    so sorted, they are the timestamps of frames 0, 1, 2, ... None when some packet has no
    timestamp or two share one: then frames are counted, at the stream's rate."""
    import av

    stamps = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the end-of-stream packet that flushes the decoder
                continue
            if packet.pts is None:
                return None
            if not packet.is_discard:  # an edit list's dropped lead-in: the decoder drops it too
                stamps.append(packet.pts)
    except av.error.FFmpegError:  # a truncated or corrupt file: its decodable start
        pass
    pts = np.sort(np.asarray(stamps, np.int64))
    if len(pts) == 0 or np.any(np.diff(pts) == 0) or stream.time_base is None:
        return None
    return FrameTimes(pts, Fraction(stream.time_base))


def _decoded(
    container: "av.container.InputContainer", stream: "av.video.stream.VideoStream", times: FrameTimes | None
) -> Iterator[tuple[int, "av.VideoFrame"]]:
    """(index, frame) in the order the decoder yields them from the container's position on. The
    index is the frame's timestamp's place among the container's timestamps (or, without them,
    a count from the start). A packet the decoder rejects is skipped (its frame never comes);
    a demuxing error ends the stream (a truncated file)."""
    import av

    count = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                index = count if times is None else times.index_of(frame.pts)
                if index is None:
                    continue
                count = index + 1
                yield index, frame
    except av.error.FFmpegError:
        return


def _undecodable() -> None:
    return None


def _bgr(frame: "av.VideoFrame") -> np.ndarray:
    """The frame as a BGR image, turned upright as the container's display matrix says (as
    OpenCV does: phones record portrait video as rotated landscape)."""
    image = frame.to_ndarray(format="bgr24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image

"""Scan: a video (or an image folder) in, reviewable events out.

The data's path: frames (sampled, decoded in a background thread) -> detections (batched, tiled)
-> coarse-to-fine refinement around every change -> tracking -> events -> outputs.

Resume: every inferred frame's detections are appended to a log (JSON lines, flushed per batch)
beside the results folder, headed by a fingerprint of the source and the detection settings.
Refinement and tracking are deterministic functions of those detections, so a scan stopped by
Ctrl-C or kill -9 continues where it stopped when the same command runs again, and ends with
exactly the result of an uninterrupted run. Batches are fixed groups of sampled frames (never
re-formed on resume), so every frame is inferred in the same company either way. Outputs are
written only at the end; then the log is marked complete and a later run starts afresh.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cvtriage.config import ScanConfig
from cvtriage.detect import Crop, Detector, FrameDetections, runs_pytorch
from cvtriage.errors import CvtriageError
from cvtriage.events import MAX_PROBE_SPACING, Event, EventTracker, refine_gap
from cvtriage.export import backend_identity, export_planned, model_to_run
from cvtriage.frames import BadRange, FrameReader, FrameSource, PrefetchedFrames, VideoInfo, probe_source, sample_step
from cvtriage.model import class_names, describe_device, inference_batch, resolve_classes, resolve_device

# 2: frames hold detections down to detect.WEAK_CONF_SHARE x conf; 3: time_s is the container's
# presentation time (a log of index / fps times would mix two clocks in one result); 4: a
# refinement crop's frame carries its region
LOG_VERSION = 4
# The settings that change which frames are inferred or what the model finds in them: a log
# written under other values cannot be resumed. (Tracking settings only replay the log.)
DETECTION_SETTINGS = {
    "weights", "classes", "conf", "iou", "imgsz", "every", "fps", "batch",
    "tile", "tile_overlap", "tile_full_frame", "refine", "refine_crop", "device",
}  # fmt: skip
# Sampled frames per model call on CUDA for `batch: auto` (the CPU takes them one at a time).
GPU_SCAN_BATCH = 8
# Sampled frames decoded ahead of the model, at least: decoding overlaps inference.
PREFETCH_FRAMES = 8
# Blocks this large get a mapping of their own from glibc's malloc (see map_large_blocks).
LARGE_BLOCK_BYTES = 1 << 20
# glibc's own thresholds once a process has freed a 32 MB block (its dynamic mmap threshold's
# ceiling on 64-bit, and twice that to trim): what a scan leaves behind (see large_blocks_mapped).
SETTLED_MMAP_THRESHOLD = 32 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)


def map_large_blocks() -> bool:
    """Make glibc's malloc give every block of LARGE_BLOCK_BYTES or more its own mapping, returned
    to the system when freed; True where that was set (glibc), False elsewhere.

    Why: a scan allocates and frees large buffers by the thousand (a 1080p frame is 6 MB, its
    model input 11 MB, PyTorch's activations more), between long-lived small objects. glibc raises
    its mmap threshold to the size of each mapped block freed (up to 32 MB), so after the first
    frame these buffers come from the heap, and their freed space, pinned between small objects,
    stays resident: the scan's RSS held 150-250 MB of freed memory and, run with PyTorch, grew for
    minutes (+18% over a 10-minute 1080p flight). A fixed threshold ends that (README, Figures:
    memory over a long flight). Process-wide, as any malloc setting is. Not for PyTorch on the
    CPU (see runs_pytorch): its activations, tens of MB a frame, would each be mapped anew (1.29x
    the wall time, 4x the system time, measured)."""
    return _glibc_mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)


@contextmanager
def large_blocks_mapped(wanted: bool) -> Iterator[None]:
    """map_large_blocks (when `wanted`) while the block runs; then glibc's settled thresholds, so
    work after a scan in the same process is not charged for it (PyTorch training then spent 4x
    the system time: every activation mapped anew)."""
    mapped = wanted and map_large_blocks()
    try:
        yield
    finally:
        if mapped:
            _glibc_mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
            _glibc_mallopt(M_TRIM_THRESHOLD, 2 * SETTLED_MMAP_THRESHOLD)


def _glibc_mallopt(parameter: int, value: int) -> bool:
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False  # other allocators (musl, macOS, Windows) have other settings
        return bool(ctypes.CDLL(None).mallopt(parameter, value))
    except (ValueError, OSError, AttributeError):  # no such confstr name, no mallopt
        return False


@dataclass
class ScanResult:
    video: VideoInfo  # frame_count and duration as decoded
    events: list[Event]
    detections: list[FrameDetections]  # every inferred frame, in frame order, at the scan's conf
    class_names: dict[int, str]
    keyframes: Mapping[int, np.ndarray]  # event_id -> BGR image of its best frame
    stats: dict
    out_dir: Path
    outputs: dict[str, Path] = field(default_factory=dict)


def results_dir(settings: ScanConfig, source: Path) -> Path:
    return Path(settings.out) / Path(source).resolve().stem


def log_path(settings: ScanConfig, source: Path) -> Path:
    # Beside the results folder, not in it: that folder is replaced whole when results are written.
    return Path(settings.out) / f".{Path(source).resolve().stem}.scan-log.jsonl"


def _file_identity(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def scan_fingerprint(video: VideoInfo, settings: ScanConfig, images: list[Path], export: str | None = None) -> str:
    """`export`: what the OpenVINO export's detections depend on, when the scan runs one
    (cvtriage.export): its scores differ from PyTorch's by up to ~0.02, enough to change events."""
    source = [_file_identity(p) for p in images] if video.kind == "images" else [_file_identity(video.path)]
    weights = Path(settings.weights)
    model = _file_identity(weights) if weights.is_file() else [settings.weights]
    if weights.is_dir():  # an exported model folder (OpenVINO): its files
        model = [_file_identity(p) for p in sorted(weights.rglob("*")) if p.is_file()]
    detection = settings.model_dump(include=DETECTION_SETTINGS)
    parts = [LOG_VERSION, source, model, detection] + ([["export", export]] if export else [])
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class DetectionLog:
    """Append-only JSON lines: a header with the fingerprint, then one line per inferred frame."""

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.fingerprint = fingerprint
        self.frames: dict[int, FrameDetections] = {}
        self.resumed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        valid_bytes = self._load() if path.exists() else 0
        if valid_bytes:
            self.resumed = bool(self.frames)
            self._file = open(path, "r+b")
            self._file.truncate(valid_bytes)  # drop a line torn by a kill mid-write
            self._file.seek(valid_bytes)
        else:
            self.frames = {}
            self._file = open(path, "wb")
            self._write([{"cvtriage_scan_log": LOG_VERSION, "fingerprint": fingerprint}])

    def _load(self) -> int:
        """Read a resumable log; returns the byte length of its valid part (0: start over)."""
        valid = 0
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle):
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                if not line.endswith(b"\n"):
                    break
                if number == 0:
                    if record.get("fingerprint") != self.fingerprint:
                        return 0  # another source or other settings: start over
                elif record.get("complete"):
                    return 0  # a finished scan: a re-run replaces its results
                else:
                    frame = _frame_from_record(record)
                    self.frames[frame.frame_index] = frame
                valid += len(line)
        return valid

    def _write(self, records: list[dict]) -> None:
        self._file.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())

    def append(self, frames: list[FrameDetections]) -> None:
        self._write([_record_from_frame(frame) for frame in frames])
        for frame in frames:
            self.frames[frame.frame_index] = frame

    @staticmethod
    def mark_complete(path: Path) -> None:
        """After the results are written: a later run of the same command scans afresh."""
        with open(path, "ab") as handle:
            handle.write(json.dumps({"complete": True}).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        self._file.close()


def _record_from_frame(frame: FrameDetections) -> dict:
    boxes = [
        [*map(float, box), float(score), int(class_id)]
        for box, score, class_id in zip(frame.boxes_xyxy, frame.scores, frame.class_ids)
    ]
    record = {"frame": frame.frame_index, "time_s": frame.time_s, "boxes": boxes}
    if frame.region is not None:
        record["region"] = list(frame.region)
    return record


def _frame_from_record(record: dict) -> FrameDetections:
    rows = np.asarray(record["boxes"], np.float64).reshape(-1, 6)
    return FrameDetections(
        int(record["frame"]),
        float(record["time_s"]),
        rows[:, :4].astype(np.float32),
        rows[:, 4].astype(np.float32),
        rows[:, 5].astype(np.int64),
        tuple(record["region"]) if "region" in record else None,
    )


def _bad_ranges(indices: set[int], reason: str) -> list[BadRange]:
    ranges: list[BadRange] = []
    for index in sorted(indices):
        if ranges and ranges[-1].last == index - 1:
            ranges[-1] = BadRange(ranges[-1].first, index, reason)
        else:
            ranges.append(BadRange(index, index, reason))
    return ranges


class _Scan:
    """One scan's moving parts; `run()` does the work. See the module docstring for the design."""

    def __init__(self, source: Path, settings: ScanConfig, console: Console, show_progress: bool, model=None):
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.settings = settings
        self.console = console
        self.show_progress = show_progress
        self.video = probe_source(source)
        self.device = resolve_device(settings.device)
        self.model, self.export = model_to_run(settings, self.device, console, model)  # export: its folder, or None
        self.class_names = class_names(self.model)
        class_ids = resolve_classes(self.model, settings.classes, f"--classes (model {settings.weights})")
        self.detector = Detector(self.model, settings, class_ids, self.device, self.video.width, self.video.height)
        self.step = sample_step(self.video, settings.every, settings.fps)
        self.source = FrameSource(self.video)
        backend = backend_identity() if self.export else None
        fingerprint = scan_fingerprint(self.video, settings, self.source.images, backend)
        self.log = DetectionLog(log_path(settings, source), fingerprint)
        self.resumed_frames = len(self.log.frames)
        self.reader = self.source.reader(cache_frames=MAX_PROBE_SPACING)
        self.tracker = EventTracker(self.video.fps, self.class_names, settings)
        self.pending = sorted(self.log.frames.values(), key=lambda f: f.frame_index)  # not yet tracked
        self.bad: set[int] = set()
        self.next_sample = 0  # the first sampled frame not yet taken in order
        self.last_sample: FrameDetections | None = None  # the last sampled frame taken in order
        self.inferred_now = 0

    # -- detections ------------------------------------------------------------------------------

    def _record(self, frames: list[FrameDetections]) -> None:
        self.log.append(frames)
        self.pending.extend(frames)
        self.inferred_now += len(frames)

    def _infer_batch(self, batch: list[tuple[int, np.ndarray]], crop: Crop | None = None) -> None:
        frames = [(index, self.video.time_of(index), image) for index, image in batch]
        self._record(self.detector.detect(frames, crop))

    def detect_frame(self, index: int, around: np.ndarray | None = None) -> FrameDetections | None:
        """One frame's detections: from the log, or read and inferred now (None if undecodable).
        With `around` (boxes), only a crop showing them where the detector finds that sound (see
        refine_gap: a frame is only ever asked for with one set of boxes)."""
        if index in self.log.frames:
            return self.log.frames[index]
        image = self.reader.read(index)
        if image is None:
            self.bad.add(index)
            return None
        self._infer_batch([(index, image)], self.detector.crop_for(around) if around is not None else None)
        return self.log.frames[index]

    # -- in-order bookkeeping --------------------------------------------------------------------

    def _take_sample(self, frame: FrameDetections) -> None:
        if self.last_sample is not None and self.settings.refine:
            refine_gap(self.last_sample, frame, self.detect_frame, self.settings.conf, self.detector.region_for)
        self.last_sample = frame
        self._track_until(frame.frame_index)

    def _advance(self, end: int | None = None) -> None:
        """Take, in frame order, every sampled frame already inferred (refining each gap on the way)."""
        while end is None or self.next_sample < end:
            index = self.next_sample
            if index in self.log.frames:
                self._take_sample(self.log.frames[index])
            elif index not in self.bad:
                return  # not inferred yet
            self.next_sample += self.step

    def _track_until(self, index: int) -> None:
        self.pending.sort(key=lambda f: f.frame_index)
        ready = [frame for frame in self.pending if frame.frame_index <= index]
        self.pending = self.pending[len(ready) :]
        for frame in ready:
            self.tracker.add(frame)

    # -- the scan --------------------------------------------------------------------------------

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]scan[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("frames  {task.fields[speed]}  [cyan]{task.fields[events]} events[/]"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.show_progress,
        )

    def run(self) -> ScanResult:
        try:
            # Memory flat over long flights; not for PyTorch on the CPU (see map_large_blocks).
            with large_blocks_mapped(not (self.device == "cpu" and runs_pytorch(self.model))):
                return self._run()
        except KeyboardInterrupt:
            raise CvtriageError(
                f"{self.video.path}: scan interrupted; run the same command again to resume", exit_code=130
            ) from None
        finally:
            self.reader.close()
            self.log.close()

    def _run(self) -> ScanResult:
        batch_size = inference_batch(self.settings.batch, self.device, GPU_SCAN_BATCH)
        wanted = lambda index: index % self.step == 0 and index not in self.log.frames  # noqa: E731
        batch_of = lambda index: index // self.step // batch_size  # noqa: E731
        prefetch = PrefetchedFrames(self.source, wanted, queue_size=max(2 * batch_size, PREFETCH_FRAMES))
        batch: list[tuple[int, np.ndarray]] = []
        loop_started = time.perf_counter()
        with self._progress() as progress:
            task = progress.add_task(self.video.path.name, total=self.video.frame_count, speed="", events=0)

            def show() -> None:
                position = self.last_sample.frame_index + 1 if self.last_sample is not None else 0
                rate = position / max(time.perf_counter() - loop_started, 1e-6)
                progress.update(task, completed=position, speed=f"{rate:.0f} fps", events=self.tracker.event_count)

            for index, image in prefetch:
                if batch and batch_of(index) != batch_of(batch[0][0]):
                    self._infer_batch(batch)
                    batch = []
                    self._advance(index)
                    show()
                if image is None:
                    self.bad.add(index)
                else:
                    batch.append((index, image))
            if batch:
                self._infer_batch(batch)
            decoded = prefetch.decoded_count or 0
            self._advance(decoded)
            last = decoded - 1
            if self.last_sample is not None and last > self.last_sample.frame_index:
                final = self.detect_frame(last)  # so an object in view at the end ends at the last frame
                if final is not None:
                    self._take_sample(final)
            self._track_until(last)
            self.video = self.video.with_frame_count(decoded)
            progress.update(task, total=decoded)
            show()
        if not self.log.frames:
            raise CvtriageError(f"{self.video.path}: no frame could be decoded")
        return self._result(decoded)

    def _result(self, decoded: int) -> ScanResult:
        events = self.tracker.events()
        bad_ranges = _bad_ranges({i for i in self.bad if i < decoded}, "could not be decoded") + self.source.bad_ranges(decoded)
        for bad in bad_ranges:
            message = f"cvtriage: warning: {self.video.path}: {bad}"
            self.console.print(message, style="yellow", soft_wrap=True, markup=False, highlight=False)
        # What the model found at the scan's threshold (the weaker ones only served refinement).
        # Refinement crops are left out: their frames' other objects were not looked for.
        in_order = sorted(self.log.frames.values(), key=lambda f: f.frame_index)
        detections = [frame.at_least(self.settings.conf) for frame in in_order if frame.region is None]
        stats = {
            "frames_total": decoded,
            "frames_inferred": len(in_order),
            "frames_cropped": len(in_order) - len(detections),  # of those, refinement crops
            "frames_sampled": len(range(0, decoded, self.step)),
            # Model input pixels (letterboxed) this run inferred, and what one whole frame takes.
            "pixels_inferred": self.detector.pixels_inferred,
            "pixels_per_frame": self.detector.pixels_per_frame,
            "sample_step": self.step,
            "frames_resumed": self.resumed_frames,
            "tiles": self.detector.describe_tiling(),
            "imgsz": self.detector.input_size,
            "device": describe_device(self.device),
            "export": str(self.export) if self.export else None,
            "bad_ranges": [(bad.first, bad.last) for bad in bad_ranges],
            "wall_time_s": round(time.perf_counter() - self.started, 3),
            "cpu_time_s": round(time.process_time() - self.cpu_started, 3),  # every thread of this process
        }
        return ScanResult(
            self.video, events, detections, self.class_names, Keyframes(self.source, events),
            stats, results_dir(self.settings, self.video.path),
        )  # fmt: skip


class Keyframes(Mapping[int, np.ndarray]):
    """Each event's best frame (event id -> BGR image), read from the source when asked for, so a
    long flight's keyframes are never all in memory at once (156 events of a 10-minute 1080p
    flyover held 925 MB). Asked for in frame order, they are read in one forward pass."""

    def __init__(self, source: FrameSource, events: list[Event]):
        self._source = source
        self._best_frames = {event.event_id: event.best_frame for event in events}
        self._reader: FrameReader | None = None

    def __getitem__(self, event_id: int) -> np.ndarray:
        index = self._best_frames[event_id]
        if self._reader is None:
            self._reader = self._source.reader()
        image = self._reader.read(index)
        if image is None:
            raise CvtriageError(f"{self._source.info.path}: frame {index} could not be read again")
        return image

    def __contains__(self, event_id: object) -> bool:  # without reading the frame
        return event_id in self._best_frames

    def __iter__(self) -> Iterator[int]:
        return iter(self._best_frames)

    def __len__(self) -> int:
        return len(self._best_frames)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def scan_source(
    source: Path, settings: ScanConfig, console: Console | None = None, show_progress: bool = True, model=None
) -> ScanResult:
    """Detect, refine and track: the events of a source, without writing any results.

    `model` is an already-loaded Ultralytics-compatible model; by default `settings.weights` is loaded.
    """
    return _Scan(Path(source), settings, console or Console(stderr=True), show_progress, model).run()


def run_scan(
    source: Path, settings: ScanConfig, console: Console | None = None, show_progress: bool = True, model=None
) -> ScanResult:
    """A whole scan: events, then the results folder (and FiftyOne), then the log marked complete."""
    from cvtriage.ingest.positions import source_positions
    from cvtriage.outputs import write_scan_outputs

    from cvtriage.teach.decisions import check_decisions_kept

    console = console or Console(stderr=True)
    check_decisions_kept(settings, [source])
    # Telemetry problems before the scan, not after it: a broken .SRT beside a long video.
    for warning in source_positions(probe_source(Path(source))).warnings:
        console.print(f"cvtriage: warning: {warning}", style="yellow", soft_wrap=True, markup=False, highlight=False)
    result = scan_source(source, settings, console, show_progress, model)
    try:
        result.outputs = write_scan_outputs(
            result.out_dir, result.video, settings, result.events, result.detections,
            result.class_names, result.keyframes, result.stats,
        )  # fmt: skip
    finally:
        result.keyframes.close()
    DetectionLog.mark_complete(log_path(settings, source))
    return result


def scan_is_finished(source: Path, settings: ScanConfig) -> bool:
    """Whether the results folder holds a finished scan of this very source under these detection
    settings: its log is marked complete under the same fingerprint (see run_scan)."""
    from cvtriage.outputs import EVENTS_JSON

    log = log_path(settings, source)
    if not (log.is_file() and (results_dir(settings, source) / EVENTS_JSON).is_file()):
        return False
    lines = log.read_bytes().splitlines()
    try:
        header, last = json.loads(lines[0]), json.loads(lines[-1])
        video = probe_source(Path(source))
    except (ValueError, IndexError, CvtriageError):
        return False
    export = backend_identity() if export_planned(settings, resolve_device(settings.device)) else None
    fingerprint = scan_fingerprint(video, settings, FrameSource(video).images, export)
    return header.get("fingerprint") == fingerprint and last.get("complete") is True


def summary_table(result: ScanResult) -> Group:
    """Events per class, then frames inferred versus total and the wall time."""
    stats = result.stats
    by_class: dict[str, list[Event]] = {}
    for event in result.events:
        by_class.setdefault(event.class_name, []).append(event)
    events = Table(title=f"Events in {result.video.path.name}", title_justify="left")
    for column in ("class", "events", "first seen", "peak conf"):
        events.add_column(column, justify="left" if column == "class" else "right")
    for name, found in sorted(by_class.items(), key=lambda item: (-len(item[1]), item[0])):
        first = min(e.first_time_s for e in found)
        events.add_row(name, str(len(found)), f"{first:.2f} s", f"{max(e.peak_confidence for e in found):.2f}")
    if not by_class:
        events.add_row("[dim](none)[/]", "0", "", "")
    total, inferred = stats["frames_total"], stats["frames_inferred"]
    figures = Table.grid(padding=(0, 2))
    figures.add_row("frames inferred", f"{inferred} of {total} ({inferred / max(total, 1):.1%})")
    figures.add_row(
        "sampling",
        f"1 frame in {stats['sample_step']}, refined around changes; input {stats['imgsz']} px, tiles {stats['tiles']}",
    )
    if stats["frames_resumed"]:
        figures.add_row("resumed", f"{stats['frames_resumed']} frames from the interrupted run")
    backend = ", OpenVINO export" if stats.get("export") else ""
    figures.add_row("wall time", f"{stats['wall_time_s']:.1f} s on {stats['device']}{backend}")
    return Group(events, figures)

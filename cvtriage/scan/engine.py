"""The scan loop: a video (or an image folder) in, its events out, nothing written but the log.

The data's path: frames (sampled, decoded in a background thread) -> detections (batched, tiled)
-> coarse-to-fine refinement around every change -> tracking -> events. A dense scan
(cvtriage.scan.dense, the default on CUDA) samples every k-th frame in large batches and refines
nothing: the same loop, the same log, the same outputs.

Resume: every inferred frame's detections go to the detection log (cvtriage.scan.log) as they
are inferred, so a scan stopped by Ctrl-C or kill -9 continues where it stopped when the same
command runs again, and ends with exactly the result of an uninterrupted run. Batches are fixed
groups of sampled frames (never re-formed on resume), so every frame is inferred in the same
company either way. Writing the results and marking the log complete are the pipeline's
(cvtriage.scan.pipeline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvtriage.config import ScanConfig
from cvtriage.errors import CvtriageError
from cvtriage.models import (
    class_names,
    describe_device,
    inference_batch,
    resolve_classes,
    resolve_device,
)
from cvtriage.progress import ProgressCallback, no_progress
from cvtriage.scan.backends.ultralytics import runs_pytorch
from cvtriage.scan.crops import Crop
from cvtriage.scan.dense import (
    DENSE_GPU_BATCH,
    conversion_threads,
    measure_rates,
    scan_strategy,
)
from cvtriage.scan.detector import Detector
from cvtriage.scan.export import backend_identity, model_to_run
from cvtriage.scan.features import ScanFeatures, scan_features
from cvtriage.scan.frames import (
    FrameReader,
    FrameSource,
    PrefetchedFrames,
    probe_source,
    sample_step,
)
from cvtriage.scan.log import DetectionLog, log_path, results_dir, scan_fingerprint
from cvtriage.scan.memory import large_blocks_mapped
from cvtriage.scan.priority import TeachingValue
from cvtriage.scan.proposals import PROPOSAL_CLASSES, ProposalDetector, with_cues
from cvtriage.scan.refine import MAX_PROBE_SPACING, refine_gap
from cvtriage.scan.tracking import EventTracker
from cvtriage.types import BadRange, Event, FrameDetections, VideoInfo

logger = logging.getLogger(__name__)

# Sampled frames per model call on CUDA for `batch: auto` (the CPU takes them one at a time).
GPU_SCAN_BATCH = 8
# Sampled frames decoded ahead of the model, at least: decoding overlaps inference.
PREFETCH_FRAMES = 8
# A note, not a warning: nothing is wrong with the input, and the default CPU scan runs an export.
FEATURES_AT_KEYFRAMES = (
    "'more like this' takes each event's features at its keyframe, from the PyTorch weights after the scan "
    "(an export has no Detect head to hook); --no-export takes them along each track"
)


@dataclass
class ScanResult:
    video: VideoInfo  # frame_count and duration as decoded
    events: list[Event]
    detections: list[FrameDetections]  # every inferred frame, in frame order, at the scan's conf
    class_names: dict[int, str]
    keyframes: Keyframes  # event_id -> BGR image of its best frame, read when asked for
    stats: dict
    out_dir: Path
    # Filled by the pipeline's steps (cvtriage.scan.pipeline): each event's review priority, the
    # paths of the results folder written.
    teaching: dict[int, TeachingValue] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    # The detector's features of each event along its track (cvtriage.scan.features); None where
    # the model gave none (an export).
    features: ScanFeatures | None = None


def _is_ultralytics_model(model) -> bool:
    """An Ultralytics model (its export, when it has no features); not a stand-in with its interface
    (a custom detector has no Detect head to promise features from)."""
    from ultralytics.engine.model import Model

    return isinstance(model, Model)


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

    def __init__(self, source: Path, settings: ScanConfig, on_progress: ProgressCallback, model=None):
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.settings = settings
        self.on_progress = on_progress
        self.video = probe_source(source)
        self.device = resolve_device(settings.device)
        self.model, self.export = model_to_run(settings, self.device, model)  # export: its folder, or None
        self.source = FrameSource(self.video)
        # A proposal scan samples frames, unrefined (cvtriage.scan.proposals): its motion and
        # contrast cues are CPU work per frame, which a dense scan's every k-th frame would multiply.
        self.strategy = "refine" if settings.propose else scan_strategy(settings.strategy, self.device)
        dense = self.strategy == "dense"
        if settings.propose:
            self.class_names = PROPOSAL_CLASSES
            self.detector = ProposalDetector.for_model(self.model, settings, self.device, self.source)
        else:
            self.class_names = class_names(self.model)
            class_ids = resolve_classes(self.model, settings.classes, f"--classes (model {settings.weights})")
            self.detector = Detector.for_model(
                self.model, settings, class_ids, self.device, self.video.width, self.video.height, dense
            )  # fmt: skip
            if self.detector.backend.features is None and _is_ultralytics_model(self.model):
                logger.info(FEATURES_AT_KEYFRAMES)
        self.batch_size = inference_batch(settings.batch, self.device, DENSE_GPU_BATCH if dense else GPU_SCAN_BATCH)
        self.refine = settings.refine and not dense and not settings.propose
        backend = backend_identity() if self.export else None
        fingerprint = scan_fingerprint(self.video, settings, self.source.images, backend, self.strategy)
        self.log = DetectionLog(log_path(settings, source), fingerprint)
        self.resumed_frames = len(self.log.frames)
        self.rates = None  # what dense_step: auto measured, when it did now
        # A dense scan's step is known once the scan has started (_dense_step may measure it).
        self.step = None if dense else sample_step(self.video, settings.every, settings.fps)
        self.reader = self.source.reader(cache_frames=MAX_PROBE_SPACING)
        self.tracker = EventTracker(self.video.fps, self.class_names, settings)
        self.pending = sorted(self.log.frames.values(), key=lambda f: f.frame_index)  # not yet tracked
        self.bad: set[int] = set()
        self.next_sample = 0  # the first sampled frame not yet taken in order
        self.last_sample: FrameDetections | None = None  # the last sampled frame taken in order
        self.inferred_now = 0

    def _dense_step(self) -> int:
        """k of a dense scan: the settings', the one the log kept, or measured now (and logged)."""
        if self.settings.dense_step != "auto":
            return self.settings.dense_step

        def measure() -> int:
            self.rates = measure_rates(self.video, self.detector, self.batch_size)
            return self.rates.step

        return int(self.log.choice("dense_step", measure))

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
        if self.last_sample is not None and self.refine:
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

    def _report(self, total: int, since: float) -> None:
        """Progress: frames up to the last sampled frame taken, the rate since `since`, events so far."""
        done = self.last_sample.frame_index + 1 if self.last_sample is not None else 0
        rate = done / max(time.perf_counter() - since, 1e-6)
        self.on_progress(done, total, f"{rate:.0f} fps  {self.tracker.event_count} events")

    def run(self) -> ScanResult:
        try:
            # Memory flat over long flights; not for PyTorch on the CPU (see memory.map_large_blocks).
            with large_blocks_mapped(not (self.device == "cpu" and runs_pytorch(self.model))):
                return self._run()
        except KeyboardInterrupt:
            raise CvtriageError(
                f"{self.video.path}: scan interrupted; run the same command again to resume", exit_code=130
            ) from None
        finally:
            self.reader.close()
            self.log.close()
            if isinstance(self.detector, ProposalDetector):
                self.detector.close()

    def _run(self) -> ScanResult:
        if self.step is None:
            self.step = self._dense_step()
        batch_size = self.batch_size
        wanted = lambda index: index % self.step == 0 and index not in self.log.frames  # noqa: E731
        batch_of = lambda index: index // self.step // batch_size  # noqa: E731
        converters = conversion_threads() if self.strategy == "dense" else 0
        prefetch = PrefetchedFrames(self.source, wanted, max(2 * batch_size, PREFETCH_FRAMES), converters)
        batch: list[tuple[int, np.ndarray]] = []
        loop_started = time.perf_counter()
        self._report(self.video.frame_count, loop_started)
        for index, image in prefetch:
            if batch and batch_of(index) != batch_of(batch[0][0]):
                self._infer_batch(batch)
                batch = []
                self._advance(index)
                self._report(self.video.frame_count, loop_started)
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
        self._report(decoded, loop_started)
        if not self.log.frames:
            raise CvtriageError(f"{self.video.path}: no frame could be decoded")
        return self._result(decoded)

    def _result(self, decoded: int) -> ScanResult:
        events = self.tracker.events()
        if self.settings.propose:
            events = with_cues(events, self.log.frames)
        bad_ranges = _bad_ranges({i for i in self.bad if i < decoded}, "could not be decoded") + self.source.bad_ranges(decoded)
        for bad in bad_ranges:
            files = [path.name for path in self.source.images[bad.first : bad.last + 1]]  # an image folder's
            named = f" ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})" if files else ""
            logger.warning("%s: %s%s", self.video.path, bad, named)
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
            "strategy": self.strategy,
            "batch": self.batch_size,
            "frames_resumed": self.resumed_frames,
            "tiles": self.detector.describe_tiling(),
            "imgsz": self.detector.input_size,
            "device": describe_device(self.device),
            "export": str(self.export) if self.export else None,
            "bad_ranges": [(bad.first, bad.last) for bad in bad_ranges],
            # dense_step: auto, measured by this run: decoding and the model, frames per second
            "dense_rates": None if self.rates is None else {"decode_fps": round(self.rates.decode_fps, 1),
                                                             "model_fps": round(self.rates.model_fps, 1)},
            "wall_time_s": round(time.perf_counter() - self.started, 3),
            "cpu_time_s": round(time.process_time() - self.cpu_started, 3),  # every thread of this process
        }
        return ScanResult(
            self.video, events, detections, self.class_names, Keyframes(self.source, events),
            stats, results_dir(self.settings, self.video.path),
            features=scan_features(events, self.log.frames),
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


def scan_source(source: Path, settings: ScanConfig, model=None, on_progress: ProgressCallback = no_progress) -> ScanResult:
    """Detect, refine and track: the events of a source, without writing any results.

    `model` is an already-loaded Ultralytics-compatible model; by default `settings.weights` is
    loaded. `on_progress(frames done, frames in the video, "NN fps  N events")` as it goes.
    """
    return _Scan(Path(source), settings, on_progress, model).run()

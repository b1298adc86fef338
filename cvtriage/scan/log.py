"""The resumable log: every inferred frame's detections, appended as JSON lines beside the results
folder and flushed per batch, headed by a fingerprint of the source and the detection settings.

Refinement and tracking are deterministic functions of those detections, so a scan stopped by
Ctrl-C or kill -9 continues where it stopped when the same command runs again. Once the results
are written (and stored), the log is marked complete, and a later run starts afresh.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cvtriage.config import ScanConfig
from cvtriage.errors import CvtriageError
from cvtriage.models import resolve_device
from cvtriage.scan.dense import scan_strategy
from cvtriage.scan.export import backend_identity, export_planned
from cvtriage.scan.frames import FrameSource, probe_source
from cvtriage.scan.results import EVENTS_JSON
from cvtriage.types import FrameDetections, VideoInfo

# 2: frames hold detections down to detector.WEAK_CONF_SHARE x conf; 3: time_s is the container's
# presentation time (a log of index / fps times would mix two clocks in one result); 4: a
# refinement crop's frame carries its region; 5: the detector's features at each box (float16,
# base64), so a resumed scan's events get the embeddings of an uninterrupted one
LOG_VERSION = 5
# The settings that change which frames are inferred or what the model finds in them: a log
# written under other values cannot be resumed. (Tracking settings only replay the log.)
DETECTION_SETTINGS = {
    "weights", "classes", "conf", "iou", "imgsz", "every", "fps", "batch",
    "tile", "tile_overlap", "tile_full_frame", "refine", "refine_crop", "device", "propose", "proposals",
}  # fmt: skip


def results_dir(settings: ScanConfig, source: Path) -> Path:
    return Path(settings.out) / Path(source).resolve().stem


# Beside the results folder <out>/<stem>, as <out>/.<stem><LOG_SUFFIX>; not in it: that folder is
# replaced whole when results are written.
LOG_SUFFIX = ".scan-log.jsonl"


def log_path(settings: ScanConfig, source: Path) -> Path:
    return Path(settings.out) / f".{Path(source).resolve().stem}{LOG_SUFFIX}"


def log_is_complete(path: Path) -> bool:
    """Whether the log's last line marks it complete (DetectionLog.mark_complete)."""
    lines = path.read_bytes().splitlines()
    try:
        return bool(lines) and json.loads(lines[-1]).get("complete") is True
    except ValueError:  # a line torn by a kill
        return False


def _file_identity(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def scan_fingerprint(
    video: VideoInfo, settings: ScanConfig, images: list[Path], export: str | None = None, strategy: str = "refine"
) -> str:
    """`export`: what the OpenVINO export's detections depend on, when the scan runs one
    (cvtriage.scan.export): its scores differ from PyTorch's by up to ~0.02, enough to change events.
    `strategy`: what settings.strategy means on the scan's device (cvtriage.scan.dense); a dense
    scan infers other frames, in other batches (a refine scan's fingerprint is as it always was)."""
    source = [_file_identity(p) for p in images] if video.kind == "images" else [_file_identity(video.path)]
    weights = Path(settings.weights)
    model = _file_identity(weights) if weights.is_file() else [settings.weights]
    if weights.is_dir():  # an exported model folder (OpenVINO): its files
        model = [_file_identity(p) for p in sorted(weights.rglob("*")) if p.is_file()]
    detection = settings.model_dump(include=DETECTION_SETTINGS)
    parts = [LOG_VERSION, source, model, detection] + ([["export", export]] if export else [])
    if strategy == "dense":
        parts.append(["strategy", strategy, settings.dense_step])
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class DetectionLog:
    """Append-only JSON lines: a header with the fingerprint, then one line per inferred frame, and
    the choices the scan made once that a resumed scan must make the same way (`choice`)."""

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.fingerprint = fingerprint
        self.frames: dict[int, FrameDetections] = {}
        self.choices: dict[str, object] = {}
        self.resumed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        valid_bytes = self._load() if path.exists() else 0
        if valid_bytes:
            self.resumed = bool(self.frames)
            self._file = open(path, "r+b")
            self._file.truncate(valid_bytes)  # drop a line torn by a kill mid-write
            self._file.seek(valid_bytes)
        else:
            self.frames, self.choices = {}, {}
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
                elif "choice" in record:
                    self.choices.update(record["choice"])
                else:
                    frame = _frame_from_record(record)
                    self.frames[frame.frame_index] = frame
                valid += len(line)
        return valid

    def _write(self, records: list[dict]) -> None:
        self._file.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())

    def choice(self, name: str, choose: Callable[[], object]) -> object:
        """The value the scan chose for `name`: the one in the log, or `choose()` now, logged
        (a measurement such as a dense scan's step: a resumed scan must infer the same frames)."""
        if name not in self.choices:
            self.choices[name] = choose()
            self._write([{"choice": {name: self.choices[name]}}])
        return self.choices[name]

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


def logged_frames(path: Path) -> dict[int, FrameDetections]:
    """Every inferred frame a log holds (complete or not), read only: frame index -> detections."""
    frames = {}
    for line in Path(path).read_bytes().splitlines()[1:]:
        record = json.loads(line)
        if "frame" in record:
            frames[int(record["frame"])] = _frame_from_record(record)
    return frames


def _record_from_frame(frame: FrameDetections) -> dict:
    boxes = [
        [*map(float, box), float(score), int(class_id)]
        for box, score, class_id in zip(frame.boxes_xyxy, frame.scores, frame.class_ids)
    ]
    record = {"frame": frame.frame_index, "time_s": frame.time_s, "boxes": boxes}
    if frame.region is not None:
        record["region"] = list(frame.region)
    if frame.features is not None and frame.features.size:
        record["features"] = base64.b64encode(frame.features.astype("<f2").tobytes()).decode("ascii")
    return record


def _frame_from_record(record: dict) -> FrameDetections:
    rows = np.asarray(record["boxes"], np.float64).reshape(-1, 6)
    features = None
    if "features" in record:
        features = np.frombuffer(base64.b64decode(record["features"]), "<f2").astype(np.float16).reshape(len(rows), -1)
    return FrameDetections(
        int(record["frame"]),
        float(record["time_s"]),
        rows[:, :4].astype(np.float32),
        rows[:, 4].astype(np.float32),
        rows[:, 5].astype(np.int64),
        tuple(record["region"]) if "region" in record else None,
        features,
    )


def scan_is_finished(source: Path, settings: ScanConfig) -> bool:
    """Whether the results folder holds a finished scan of this very source under these detection
    settings: its log is marked complete under the same fingerprint (see cvtriage.scan.pipeline)."""
    log = log_path(settings, source)
    if not (log.is_file() and (results_dir(settings, source) / EVENTS_JSON).is_file()):
        return False
    lines = log.read_bytes().splitlines()
    try:
        header, last = json.loads(lines[0]), json.loads(lines[-1])
        video = probe_source(Path(source))
    except (ValueError, IndexError, CvtriageError):
        return False
    device = resolve_device(settings.device)
    export = backend_identity() if export_planned(settings, device) else None
    strategy = scan_strategy(settings.strategy, device)
    fingerprint = scan_fingerprint(video, settings, FrameSource(video).images, export, strategy)
    return header.get("fingerprint") == fingerprint and last.get("complete") is True

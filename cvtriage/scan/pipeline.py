"""The scan pipeline, in one place: scan -> review priority -> write -> store -> mark complete.

Each step is a plain function of the scan's result and its settings, so a caller runs the steps
it owns: `run_scan` runs them all for one video; a batch's workers run `scan_to_results_folder`
(scan, priority, write: files only) and its driver, the one FiftyOne writer, `finish_scan`
(store, mark complete) for each video they return (cvtriage.batch.runner).

The log is marked complete last: a scan stopped before that (killed while writing or storing)
runs again from its log, inferring nothing anew, and redoes the steps after the scan. A results
folder written whose store failed (the database down, unreachable or busy) is kept, and
`store_results_folder` (`cvtriage store FOLDER`) stores it later, from the folder alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cvtriage.config import ScanConfig
from cvtriage.errors import CvtriageError, first_line
from cvtriage.models import resolve_device
from cvtriage.progress import ProgressCallback, no_progress
from cvtriage.scan.engine import ScanResult, scan_source
from cvtriage.scan.features import keyframe_features
from cvtriage.scan.frames import probe_source, source_identity
from cvtriage.scan.log import LOG_SUFFIX, DetectionLog, log_is_complete, log_path
from cvtriage.scan.outputs import write_scan_outputs
from cvtriage.scan.priority import teaching_values
from cvtriage.scan.results import read_scan_run
from cvtriage.scan.store import check_decisions_kept, store_results_in_fiftyone
from cvtriage.telemetry.camera import camera_named
from cvtriage.telemetry.positions import source_positions
from cvtriage.types import FrameDetections

logger = logging.getLogger(__name__)


def run_scan(source: Path, settings: ScanConfig, model=None, on_progress: ProgressCallback = no_progress) -> ScanResult:
    """A whole scan of one source: its events, their review priority, the results folder, the
    FiftyOne samples (unless settings.dataset is None), then the log marked complete.

    `model` is an already-loaded Ultralytics-compatible model (default: settings.weights loaded);
    `on_progress` follows the scan's frames (cvtriage.scan.engine.scan_source)."""
    check_decisions_kept(settings, [source])
    if settings.positions.camera:
        camera_named(settings.positions.camera)  # an unknown camera fails now, not after the scan
    # Telemetry problems before the scan, not after it: a broken .SRT beside a long video.
    for warning in source_positions(probe_source(Path(source))).warnings:
        logger.warning(warning)
    result = scan_to_results_folder(source, settings, model, on_progress)
    finish_scan(source, result, settings)
    return result


def scan_to_results_folder(
    source: Path, settings: ScanConfig, model=None, on_progress: ProgressCallback = no_progress
) -> ScanResult:
    """The steps that only write files: scan, review priority, results folder. What a batch's
    worker does; storing and marking complete are left to `finish_scan`."""
    result = scan_source(source, settings, model, on_progress)
    if result.features is None and result.stats.get("export") and str(settings.weights).endswith(".pt"):
        # An export has no feature maps: the PyTorch weights it was made from give them at each keyframe.
        result.features = keyframe_features(
            settings.weights, result.events, result.keyframes, settings.imgsz, resolve_device(settings.device)
        )
    prioritise(result, settings)
    write_results(result, settings)
    return result


def finish_scan(source: Path, result: ScanResult, settings: ScanConfig) -> None:
    """The steps after the results folder: the events stored, then the log marked complete."""
    store_results(result, settings)
    mark_complete(source, settings)


def prioritise(result: ScanResult, settings: ScanConfig) -> None:
    """Each event's review priority (cvtriage.scan.priority), for the results and the review queue."""
    video = result.video
    result.teaching = teaching_values(result.events, settings.conf, video.fps, (video.width, video.height))


def write_results(result: ScanResult, settings: ScanConfig) -> None:
    """The results folder (cvtriage.scan.outputs); the keyframes are read from the source meanwhile."""
    try:
        result.outputs = write_scan_outputs(
            result.out_dir, result.video, settings, result.events, result.detections,
            result.class_names, result.keyframes, result.stats, result.teaching, result.features,
        )  # fmt: skip
    finally:
        result.keyframes.close()


def store_results(result: ScanResult, settings: ScanConfig) -> None:
    """The events of a results folder already written, as FiftyOne samples (none when
    settings.dataset is None). When the database fails, one line says the folder is kept and how
    to store it later."""
    if settings.dataset is None:
        return
    try:
        store_results_in_fiftyone(
            settings.dataset, result.out_dir, result.video, result.events, result.detections,
            result.class_names, result.teaching,
        )  # fmt: skip
    except _database_failures() as error:
        reason = first_line(error)
        raise CvtriageError(
            f"{result.out_dir}: the results are written, but storing them in FiftyOne dataset '{settings.dataset}' "
            f"failed ({reason}); store them later with: cvtriage store {result.out_dir} --dataset {settings.dataset}"
        ) from None


def _database_failures() -> tuple[type[BaseException], ...]:
    """What a database that is down, unreachable or busy raises: pymongo's errors, FiftyOne's
    service failing to start, and the write lease not coming free (a CvtriageError)."""
    from fiftyone.core.service import ServiceException
    from pymongo.errors import PyMongoError

    return (PyMongoError, ServiceException, CvtriageError)


def store_results_folder(folder: Path, dataset_name: str) -> int:
    """Store a results folder written earlier (a scan whose store failed, or a batch that stopped
    before storing) in `dataset_name`, as the scan would have, then mark its log complete.
    Returns the number of events stored. The source video must still be where it was scanned."""
    run = read_scan_run(folder)
    video = probe_source(run.source)
    if source_identity(video) != run.video.get("identity"):
        raise CvtriageError(f"{run.source}: not the video scanned into {run.folder} (it changed since): scan it again")
    video = video.with_frame_count(int(run.video["frame_count"]))
    ids = {name: class_id for class_id, name in enumerate(run.classes)}
    detections = []
    for frame, rows in sorted(run.detections.items()):
        boxes = np.array([box for _, box, _ in rows], np.float32).reshape(-1, 4)
        scores = np.array([confidence for _, _, confidence in rows], np.float32)
        class_ids = np.array([ids[name] for name, _, _ in rows], np.int64)
        detections.append(FrameDetections(frame, video.time_of(frame), boxes, scores, class_ids))
    events = sorted(run.events.values(), key=lambda event: event.event_id)
    teaching = teaching_values(events, float(run.settings["conf"]), video.fps, (video.width, video.height))
    store_results_in_fiftyone(dataset_name, run.folder, video, events, detections, dict(enumerate(run.classes)), teaching)
    log = run.folder.parent / f".{run.folder.name}{LOG_SUFFIX}"
    if log.is_file() and not log_is_complete(log):
        DetectionLog.mark_complete(log)
    return len(events)


def mark_complete(source: Path, settings: ScanConfig) -> None:
    """The source's detection log marked complete: a later run of the same command scans afresh,
    and a batch skips it (cvtriage.scan.log.scan_is_finished)."""
    DetectionLog.mark_complete(log_path(settings, source))

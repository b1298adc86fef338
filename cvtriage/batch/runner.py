"""The batch: skip what a previous run finished, scan the rest (here, or one Ray task per video),
then, in this process only, store each video's events in FiftyOne and mark its log complete.

A video's detection log is the one record of how far its scan got: a video whose log is marked
complete under the same fingerprint (`scan_is_finished`) is skipped; any other continues from
its log, whichever process or machine scanned it before. The log is marked complete only after
the driver has stored the video's events, so a batch killed in between scans nothing again on
the next run (every frame is in the log) but does store the events it had not stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from cvtriage.batch import ray_tasks
from cvtriage.batch.sources import Sources
from cvtriage.batch.summary import write_batch_json
from cvtriage.batch.types import BatchReport, ModelRecipe, VideoOutcome
from cvtriage.batch.worker import scan_video
from cvtriage.config import BatchConfig, ScanConfig, load_batch_config
from cvtriage.errors import CvtriageError
from cvtriage.files import fault_point
from cvtriage.progress import ProgressCallback, no_progress
from cvtriage.scan.log import results_dir, scan_is_finished
from cvtriage.scan.pipeline import finish_scan
from cvtriage.scan.results import EVENTS_JSON
from cvtriage.scan.store import check_decisions_kept, check_scan_dataset

BATCH_JSON = "batch.json"


def run_batch(
    sources: Sources,
    settings: ScanConfig,
    ray_address: str | None = None,
    recipe: ModelRecipe | None = None,
    batch: BatchConfig | None = None,
    on_progress: ProgressCallback = no_progress,
) -> BatchReport:
    """Scan every source (in this process, or on Ray when `ray_address` is given) and report each.

    `recipe` says how to build the model (default: load `settings.weights`). `on_progress(videos
    done, videos to scan, "NN frames/s")` as each finishes. Writes <out>/batch.json.
    """
    started = time.perf_counter()
    recipe = recipe or ModelRecipe(settings.weights)
    batch = batch or load_batch_config()
    # Absolute paths: a Ray worker may run in another folder, or on another machine sharing them.
    settings = settings.model_copy(update={"out": str(Path(settings.out).resolve())})
    outcomes: dict[Path, VideoOutcome] = {}
    to_scan: list[Path] = []
    owners: dict[Path, Path] = {}
    for source in (Path(source).resolve() for source in sources.paths):
        folder = results_dir(settings, source)
        if folder in owners:
            reason = f"its results folder {folder} is also that of {owners[folder]}: scan it alone with another --out"
            outcomes[source] = VideoOutcome(source, "failed", reason)
        elif scan_is_finished(source, settings):
            owners[folder] = source
            outcomes[source] = _finished_earlier(source, folder)
        else:
            owners[folder] = source
            to_scan.append(source)
    if settings.dataset is not None:
        from cvtriage.database import connect_database

        connect_database()
        check_scan_dataset(settings.dataset)  # before scanning, not after
        check_decisions_kept(settings, to_scan)

    connection = None
    frames = 0
    try:
        if ray_address is not None:
            connection = ray_tasks.connect(ray_address, batch)
            runner = ray_tasks.describe_cluster()
            scans = ray_tasks.scan_videos(to_scan, settings, recipe, batch, local=connection.local)
        else:
            runner = "one process"
            scans = _scan_here(to_scan, settings, recipe)
        on_progress(0, len(to_scan), "")
        for done, outcome in enumerate(scans, start=1):
            fault_point("batch-scanned")  # a video scanned, its results folder written, nothing stored
            outcome = _store(outcome, settings)
            outcomes[outcome.source] = outcome
            frames += outcome.frames_total or 0
            rate = frames / max(time.perf_counter() - started, 1e-6)
            on_progress(done, len(to_scan), f"{rate:.0f} frames/s")
    finally:
        if connection is not None and connection.ended_here:
            ray_tasks.disconnect()
    ordered = [outcomes[Path(source).resolve()] for source in sources.paths]
    ordered += [VideoOutcome(Path(entry), "missing", reason) for entry, reason in sources.missing]
    report = BatchReport(ordered, round(time.perf_counter() - started, 3), runner, Path(settings.out) / BATCH_JSON)
    write_batch_json(report)
    return report


def _scan_here(sources: list[Path], settings: ScanConfig, recipe: ModelRecipe) -> Iterator[VideoOutcome]:
    model = recipe.load() if sources else None  # once for the batch; unusable weights fail it here, in one line
    for source in sources:
        yield scan_video(source, settings, model)


def _store(outcome: VideoOutcome, settings: ScanConfig) -> VideoOutcome:
    """The driver's part of a scanned video (cvtriage.scan.pipeline.finish_scan): its FiftyOne
    samples, then its log marked complete."""
    scan, outcome.scan = outcome.scan, None
    if scan is None:
        return outcome
    try:
        finish_scan(outcome.source, scan, settings)
    except CvtriageError as error:
        return VideoOutcome(outcome.source, "failed", f"storing its events in FiftyOne: {error}")
    return outcome


def _finished_earlier(source: Path, folder: Path) -> VideoOutcome:
    stats = json.loads((folder / EVENTS_JSON).read_text(encoding="utf-8"))["stats"]
    return VideoOutcome(
        source, "finished earlier", events=stats["events"], frames_inferred=stats["frames_inferred"],
        frames_total=stats["frames_total"], wall_time_s=stats["wall_time_s"], out_dir=folder,
    )  # fmt: skip


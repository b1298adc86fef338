"""A batch's failure paths, each made to happen: a video whose Ray workers all die (retries run
out), the driver stopped dead between a worker's scan and storing its events
(cvtriage.files.fault_point), two sources that would share one results folder, and a detection
log whose last line a kill tore. Real local Ray (2 CPUs), FiftyOne and files."""

import functools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from square_video import DyingSquareDetector, Square, SquareDetector, write_square_video
from test_batch import (  # noqa: F401 (flights: a fixture)
    FLIGHTS,
    events_of,
    flights,
    samples_by_video,
    scanned_alone,
    settings_for,
)

from cvtriage.batch.runner import run_batch
from cvtriage.batch.sources import expand_sources
from cvtriage.batch.types import ModelRecipe
from cvtriage.config import load_batch_config
from cvtriage.database import connect_database
from cvtriage.files import FAULT_ENV, FAULT_EXIT_CODE
from cvtriage.scan.log import log_path
from cvtriage.scan.pipeline import run_scan

TESTS = Path(__file__).resolve().parent
SQUARES = ModelRecipe("squares", SquareDetector)


def test_a_video_whose_workers_all_die_fails_alone_once_its_retries_run_out(ray_runtime, flights, tmp_path):  # noqa: F811
    """Every worker that takes the small video dies (SIGKILL, as the OOM killer would); Ray runs
    it again max_retries times, then the batch reports it failed and scans the rest. Fails if the
    task is given one more retry than configured (cvtriage.batch.ray_tasks, scan_videos:
    `max_retries=batch.max_retries` -> `max_retries=batch.max_retries + 1`): three workers die."""
    small = write_square_video(tmp_path / "small.mp4", [Square(0, 0, 30, 10, 10)], frames=30, width=160, height=96)
    pid_dir = tmp_path / "attempts"
    pid_dir.mkdir()
    recipe = ModelRecipe("squares", functools.partial(DyingSquareDetector, 160, str(pid_dir)))
    settings = settings_for(tmp_path / "runs", None)
    report = run_batch(expand_sources([small, flights / "south.mp4"]), settings, ray_address="auto", recipe=recipe,
                       batch=load_batch_config(max_retries=1))  # fmt: skip
    doomed, south = report.outcomes
    assert (doomed.status, south.status) == ("failed", "scanned")
    assert doomed.reason.startswith("WorkerCrashedError on Ray"), doomed.reason
    assert len(list(pid_dir.iterdir())) == 2  # the first attempt and its one retry, each a process of its own
    assert events_of(tmp_path / "runs" / "south") == scanned_alone(flights / "south.mp4", tmp_path)
    assert json.loads(report.batch_json.read_text())["failed"] == 1 and not (tmp_path / "runs" / "small").exists()


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from square_video import SquareDetector
from cvtriage.batch.runner import run_batch
from cvtriage.batch.sources import expand_sources
from cvtriage.batch.types import ModelRecipe
from cvtriage.config import load_scan_config

settings = load_scan_config(out={out!r}, device="cpu", dataset={dataset!r}, fps=2.0)
run_batch(expand_sources({sources!r}), settings, ray_address="auto", recipe=ModelRecipe("squares", SquareDetector))
"""


def test_a_driver_killed_between_a_workers_scan_and_storing_its_events_stores_them_next_run(ray_runtime, flights, tmp_path):  # noqa: F811
    """The driver (a process of its own on the session's Ray cluster) stops dead as the first
    worker's scan comes back, before its events are stored; the same batch run again stores every
    video's events once, inferring nothing anew for a video already scanned. Fails if a batch
    takes a results folder for a finished scan (cvtriage.batch.runner, run_batch: `elif
    scan_is_finished(source, settings):` -> `elif (results_dir(settings, source) /
    EVENTS_JSON).is_file():`): that video is then skipped, its events never stored."""
    import fiftyone as fo

    connect_database()  # this process starts or joins FiftyOne's database, so the stopped driver does not own it
    dataset = f"test-batch-driver-{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path / "runs", dataset)
    sources = [str(flights / f"{name}.mp4") for name in FLIGHTS]
    script = DRIVER.format(tests=str(TESTS), out=settings.out, dataset=dataset, sources=sources)
    env = {**os.environ, FAULT_ENV: "batch-scanned", "RAY_ADDRESS": ray_runtime.get_runtime_context().gcs_address}
    driver = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert driver.returncode == FAULT_EXIT_CODE, driver.stderr[-3000:]

    def frame_lines(name: str) -> list[str]:  # the log's frame records (not its header or end mark)
        log = log_path(settings, flights / f"{name}.mp4")
        return [line for line in log.read_text().splitlines()[1:] if '"complete"' not in line] if log.exists() else []

    scanned = [name for name in FLIGHTS if (tmp_path / "runs" / name / "events.json").is_file()]
    assert scanned and not any(log_path(settings, flights / f"{name}.mp4").read_text().endswith('{"complete": true}\n')
                               for name in scanned)  # fmt: skip
    before = {name: frame_lines(name) for name in scanned}
    assert not fo.dataset_exists(dataset) or len(fo.load_dataset(dataset)) == 0  # nothing stored

    report = run_batch(expand_sources(sources), settings, ray_address="auto", recipe=SQUARES)
    assert {o.source.stem: o.status for o in report.outcomes if o.source.stem in scanned} == dict.fromkeys(scanned, "resumed")
    for name in scanned:  # every frame was in its log: none inferred again
        assert frame_lines(name) == before[name]
    for name in FLIGHTS:
        assert json.loads(log_path(settings, flights / f"{name}.mp4").read_text().splitlines()[-1]) == {"complete": True}
        assert events_of(tmp_path / "runs" / name) == scanned_alone(flights / f"{name}.mp4", tmp_path)
    assert samples_by_video(dataset) == {name: [e["id"] for e in events_of(tmp_path / "runs" / name)] for name in FLIGHTS}
    fo.delete_dataset(dataset)


def test_two_sources_that_would_share_a_results_folder_scan_the_first_only(flights, tmp_path):  # noqa: F811
    """Fails if the batch lets both write one folder (cvtriage.batch.runner, run_batch: `if
    folder in owners:` -> `if False:`): the second clip then replaces the first's results."""
    dataset = f"test-batch-same-name-{uuid.uuid4().hex[:8]}"
    first, second = tmp_path / "monday" / "flight.mp4", tmp_path / "tuesday" / "flight.mp4"
    first.parent.mkdir()
    second.parent.mkdir()
    os.link(flights / "north.mp4", first)
    os.link(flights / "south.mp4", second)
    settings = settings_for(tmp_path / "runs", dataset)
    report = run_batch(expand_sources([first, second]), settings, recipe=SQUARES)
    assert [(o.source, o.status) for o in report.outcomes] == [(first, "scanned"), (second, "failed")]
    assert report.outcomes[1].reason == (
        f"its results folder {tmp_path / 'runs' / 'flight'} is also that of {first}: scan it alone with another --out"
    )
    assert events_of(tmp_path / "runs" / "flight") == scanned_alone(flights / "north.mp4", tmp_path)
    assert samples_by_video(dataset) == {"flight": [e["id"] for e in events_of(tmp_path / "runs" / "flight")]}
    import fiftyone as fo

    assert fo.load_dataset(dataset).distinct("source_video") == [str(first)]
    fo.delete_dataset(dataset)


@pytest.mark.parametrize("tear", ["mid-record", "before its newline"])
def test_a_detection_log_with_a_torn_last_line_resumes_from_its_whole_lines(flights, tmp_path, tear):  # noqa: F811
    """A kill mid-write leaves half a frame's record, or the whole record without its newline.
    Fails, mid-record, if a line that does not parse throws the log away (cvtriage.scan.log,
    DetectionLog._load: the `break` after `except ValueError:` -> `return 0`): the video is then
    scanned from the start, not resumed; before its newline, if a line without one counts as
    whole (drop `if not line.endswith(b"\\n"): break`): the next record is then appended to it,
    and that line of the log no longer parses."""
    north = flights / "north.mp4"
    settings = settings_for(tmp_path / "runs", None)
    reference = run_scan(north, settings_for(tmp_path / "reference", None), model=SquareDetector())
    log = log_path(settings, north)
    log.parent.mkdir(parents=True)
    header, *frames, _complete = log_path(settings_for(tmp_path / "reference", None), north).read_bytes().splitlines(keepends=True)
    torn = frames[6][: len(frames[6]) // 2] if tear == "mid-record" else frames[6].rstrip(b"\n")
    log.write_bytes(header + b"".join(frames[:6]) + torn)

    report = run_batch(expand_sources([north]), settings, recipe=SQUARES)
    assert [o.status for o in report.outcomes] == ["resumed"]
    assert events_of(tmp_path / "runs" / "north") == events_of(reference.out_dir)
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line whole
    assert records[-1] == {"complete": True}
    indices = [record["frame"] for record in records[1:-1]]
    assert sorted(indices) == sorted(json.loads(line)["frame"] for line in frames)  # each frame once

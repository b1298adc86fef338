"""Several cvtriage commands started at the same moment on a cold local database (a
FIFTYONE_DATABASE_DIR of their own, no mongod running: tests/commands_at_once.py): one of them
starts FiftyOne's mongod, the others join it, and every one lands, with no traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from commands_at_once import (
    PlanResult,
    cold_environment,
    cold_start_possible,
    cvtriage,
    events_of,
    make_flyovers,
    read_datasets,
    run_plan,
    scan_alone,
    scan_command,
    stored_events,
)
from yolo_factory import write_yolo_dataset


@pytest.fixture(scope="module")
def flyovers(tmp_path_factory) -> list[Path]:
    return make_flyovers(tmp_path_factory.mktemp("flyovers"))


def write_pairs(folder: Path, count: int) -> list[str]:
    """Image + sidecar pairs, written a minute ago (a `--once` pass takes them at once)."""
    folder.mkdir()
    long_ago = time.time() - 60
    names = [f"pair{number}" for number in range(count)]
    for number, name in enumerate(names):
        image = np.full((48, 64, 3), 120, np.uint8)
        cv2.rectangle(image, (8 + number, 8), (24 + number, 24), (40, 40, 220), -1)
        cv2.imwrite(str(folder / f"{name}.jpg"), image)
        (folder / f"{name}.json").write_text(json.dumps({"lat": 45.5, "lon": 7.25, "alt": 120, "image": f"{name}.jpg"}))
        for path in (folder / f"{name}.jpg", folder / f"{name}.json"):
            os.utime(path, (long_ago, long_ago))
    return names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SCANNED = [f"at-once-{number}" for number in range(4)]


@dataclass
class Run:
    work: Path
    videos: list[Path]  # scanned into SCANNED, in order
    pairs: list[str]  # the watched folder's pairs
    url: str  # the App's
    result: PlanResult
    stored: dict  # what the datasets hold at the end (read_datasets)


@pytest.fixture(scope="module")
def at_once(flyovers, tmp_path_factory, random_init_weights) -> Run:
    """One cold start for every test here (each process costs seconds of imports): 4 scans into 4
    datasets, a `watch --once` and an `audit-labels`, all started at the same moment; then the
    App serves the first scan's dataset while a scan of the other flyover goes into it."""
    if not cold_start_possible():
        pytest.skip("a FiftyOne database service of this user is running and this OS gives no PID namespace: no cold start")
    work = tmp_path_factory.mktemp("at-once")
    videos = [flyovers[0], flyovers[1], flyovers[0], flyovers[1]]
    pairs = write_pairs(work / "arriving", 6)
    labels = write_yolo_dataset(work / "labels", {"train": 4, "val": 2})
    together = [scan_command(video, work / name, name) for name, video in zip(SCANNED, videos)] + [
        cvtriage("watch", work / "arriving", "--once", "--out", work / "watch", "--dataset", "watched",
                 "--weights", random_init_weights, "--imgsz", "64", "--device", "cpu"),
        cvtriage("audit-labels", labels, "--weights", random_init_weights, "--dataset", "audited", "--imgsz", "64",
                 "--device", "cpu", "--out", work / "audit"),
    ]  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    plan = [
        {"together": together},
        {"serve": cvtriage("app", SCANNED[0], "--port", port), "ready": "http://"},
        {"together": [scan_command(flyovers[1], work / "beside-the-app", SCANNED[0])]},
        {"together": [read_datasets([SCANNED[0], *SCANNED[1:], "watched", "audited"], url)]},
    ]
    result = run_plan(plan, work / "db", work / "plan")
    assert result.cold, "another FiftyOne database service was running: not a cold start"
    assert result.failures() == []
    return Run(work, videos, pairs, url, result, json.loads(result.steps[-1][0].stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_four_scans_at_once_all_land_with_the_events_of_scans_run_one_at_a_time(at_once, flyovers, tmp_path):
    alone = {video: scan_alone(video, tmp_path) for video in flyovers}  # one at a time, in this process
    assert all(alone.values()), "the demo model found nothing: the comparison would prove nothing"
    for name, video in zip(SCANNED, at_once.videos):
        results = at_once.work / name / video.stem
        assert events_of(results) == alone[video]
        of_this_video = [event for event in at_once.stored[name]["events"] if event[0] == str(video.resolve())]
        assert of_this_video == stored_events(video, results)


@pytest.mark.slow
def test_a_watch_and_an_audit_started_with_the_scans_land(at_once):
    assert at_once.stored["watched"]["pairs"] == at_once.pairs
    assert at_once.stored["audited"]["samples"] == 6


@pytest.mark.slow
def test_a_scan_lands_in_the_dataset_the_app_is_serving(at_once, flyovers):
    app = at_once.result.steps[1][0]
    assert at_once.url in app.stdout and "App stopped." in app.stderr  # served throughout, then stopped by Ctrl-C
    both = sorted(
        stored_events(flyovers[0], at_once.work / SCANNED[0] / flyovers[0].stem)
        + stored_events(flyovers[1], at_once.work / "beside-the-app" / flyovers[1].stem)
    )
    assert at_once.stored[SCANNED[0]]["events"] == both and at_once.stored["app"] == len(both)


def test_a_database_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = cold_environment(blocker / "fiftyone" / "db")
    done = subprocess.run(cvtriage("harvest", "any", tmp_path / "out"), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cvtriage: error: FiftyOne's local database ({blocker / 'fiftyone' / 'db'}): cannot create {blocker / 'fiftyone'} (Not a directory)"
    ]


def test_a_database_service_started_while_joining_writes_to_its_log_not_among_the_command_s_lines(tmp_path, capfd):
    """FiftyOne's service inherits the command's stdout and stderr: one whose mongod lost the
    --dbpath lock (a plain FiftyOne process starting at the same moment) printed mongod's log
    line and its exit before the command's own output, and on the stdout that `cvtriage app`
    gives scripts its URL."""
    import sys

    from cvtriage.database import _children_write_to

    log = tmp_path / "log" / "cvtriage-service.log"
    print("before", flush=True)
    with _children_write_to(log):
        subprocess.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], check=True)
    print("after")
    captured = capfd.readouterr()
    assert log.read_text().split() == ["out", "err"]
    assert (captured.out, captured.err) == ("before\nafter\n", "")

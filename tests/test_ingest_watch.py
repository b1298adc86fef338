"""`cvtriage watch`: pairing in any order, exactly once across runs, quarantine with reasons, lone
halves, a live watchdog observer, and the one-line refusals. Real SQLite, FiftyOne and watchdog."""

import csv
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time

import cv2
import fiftyone as fo
import pytest
from square_video import Square, SquareDetector, render
from typer.testing import CliRunner

from cvtriage.cli import app
from cvtriage.config import load_ingest_config, load_scan_config
from cvtriage.errors import CvtriageError
from cvtriage.ingest.watch import watch_folder

SCAN = load_scan_config(weights="square-detector", imgsz=96, tile="off", device="cpu")


def settings_for(tmp_path, dataset=None, **overrides):
    values = {"out": str(tmp_path / "out"), "dataset": dataset, "settle_seconds": 0.3, "poll_seconds": 0.05,
              "pair_timeout": 3600, **overrides}  # fmt: skip
    return load_ingest_config(**values)


def write_pair(folder, name, squares=(), sidecar=None, order=("jpg", "json")):
    image = render(list(squares), 0, 160, 96)
    for suffix in order:
        if suffix == "jpg":
            cv2.imwrite(str(folder / f"{name}.jpg"), image)
        else:
            data = sidecar if sidecar is not None else {"lat": 45.5, "lon": 7.25, "alt": 300, "image": f"{name}.jpg"}
            (folder / f"{name}.json").write_text(json.dumps(data) if isinstance(data, dict) else data)


def rows(out):
    with open(out / "pairs.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_pairs_in_any_order_processed_once_across_runs_bad_ones_quarantined(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_pair(folder, "a", [Square(0, 0, 0, 20, 20, side=20)])  # image first
    write_pair(folder, "b", order=("json", "jpg"))  # sidecar first
    write_pair(folder, "wrong", sidecar={"image": "other.jpg"})
    write_pair(folder, "broken", sidecar='{"lat": 45.5,')
    write_pair(folder, "huge", sidecar={"pad": "x" * 5000})
    (folder / "lone.json").write_text("{}")
    (folder / "notes.txt").write_text("hello")
    settings = settings_for(tmp_path, dataset="watch-once", max_sidecar_bytes=4000)
    first = watch_folder(folder, SCAN, settings, once=True, model=SquareDetector())
    out = tmp_path / "out"
    assert (first.processed, first.flagged) == (2, 1)
    listed = {row["name"]: row for row in rows(out)}
    assert set(listed) == {"a", "b"} and listed["a"]["classes"] == "red square:1" and listed["a"]["latitude"] == "45.5"
    dataset = fo.load_dataset("watch-once")
    assert sorted(dataset.values("pair_name")) == ["a", "b"]
    assert dataset.match_tags("flagged").values("pair_name") == ["a"]
    assert dataset.values("location.point") == [[7.25, 45.5], [7.25, 45.5]]  # [longitude, latitude]
    with open(out / "quarantine" / "reasons.csv", newline="") as handle:
        reasons = {row["file"]: row["reason"] for row in csv.DictReader(handle)}
    assert reasons["wrong.jpg"] == reasons["wrong.json"] == "wrong.json: describes other.jpg, not wrong.jpg"
    assert reasons["broken.json"].startswith("broken.json: not valid JSON (line 1")
    huge = (folder.parent / "out" / "quarantine" / "huge.json").stat().st_size
    assert huge > 4000 and reasons["huge.json"] == f"huge.json: {huge:,} bytes, over the sidecar size limit of 4,000"
    assert reasons["notes.txt"].startswith("notes.txt: not an image")
    assert sorted(p.name for p in (out / "quarantine").iterdir() if p.name != "reasons.csv") == sorted(reasons)
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "a.json", "b.jpg", "b.json", "lone.json"]

    # Again, with a pair re-delivered, a late partner for the lone half and a fixed bad pair.
    write_pair(folder, "b")
    write_pair(folder, "lone", order=("jpg",))
    write_pair(folder, "broken")
    second = watch_folder(folder, SCAN, settings, once=True, model=SquareDetector())
    assert second.processed == 2 and second.redelivered == 2
    assert sorted(row["name"] for row in rows(out)) == ["a", "b", "broken", "lone"]
    assert sorted(dataset.values("pair_name")) == ["a", "b", "broken", "lone"]
    assert second.totals["processed"] == 4 and second.totals["waiting"] == 0


def test_lone_half_older_than_the_timeout_is_reported_and_left_in_place(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("cvtriage"), "propagate", True)  # the CLI's log printer may have stopped it
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "alone.jpg").write_bytes(cv2.imencode(".jpg", render([], 0, 32, 32))[1].tobytes())
    hour_ago = time.time() - 3600
    os.utime(folder / "alone.jpg", (hour_ago, hour_ago))
    summary = watch_folder(folder, SCAN, settings_for(tmp_path, pair_timeout=600), once=True, model=SquareDetector())
    assert summary.lone_reported == 1 and (folder / "alone.jpg").is_file()
    assert "alone.jpg: no sidecar after 60 min; left in place" in caplog.text
    with open(tmp_path / "out" / "lone_halves.csv", newline="") as handle:
        assert [(row["name"], row["missing"]) for row in csv.DictReader(handle)] == [("alone", "sidecar")]


def test_a_kill_between_the_ledger_and_pairs_csv_is_repaired_at_the_next_start(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("p1", "p2", "p3"):
        write_pair(folder, name)
    settings = settings_for(tmp_path)
    watch_folder(folder, SCAN, settings, once=True, model=SquareDetector())
    csv_path = tmp_path / "out" / "pairs.csv"
    lines = csv_path.read_bytes().splitlines(keepends=True)
    csv_path.write_bytes(b"".join(lines[:2]) + lines[2][:7])  # p2's row torn mid-write, p3's never written
    summary = watch_folder(folder, SCAN, settings, once=True, model=SquareDetector())
    assert summary.csv_rows_recovered == 2 and summary.processed == 0
    assert sorted(row["name"] for row in rows(tmp_path / "out")) == ["p1", "p2", "p3"]
    ledger = sqlite3.connect(tmp_path / "out" / "ledger.sqlite")
    assert ledger.execute("SELECT COUNT(*) FROM pairs WHERE state = 'processed'").fetchone() == (3,)


def test_live_observer_pairs_halves_arriving_apart_and_one_written_slowly(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    settings = settings_for(tmp_path, rescan_seconds=3600)  # OS events only: no rescan would catch them
    stop = threading.Event()
    summaries = []
    watcher = threading.Thread(target=lambda: summaries.append(
        watch_folder(folder, SCAN, settings, model=SquareDetector(), stop=stop)))  # fmt: skip
    watcher.start()
    time.sleep(1.0)
    write_pair(folder, "early", order=("json",))
    time.sleep(0.5)
    data = cv2.imencode(".jpg", render([Square(1, 0, 0, 30, 30, side=24)], 0, 160, 96))[1].tobytes()
    with open(folder / "early.jpg", "wb") as handle:  # written in two halves, 0.15 s apart
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(0.15)
        handle.write(data[len(data) // 2 :])
    deadline = time.time() + 20
    while time.time() < deadline and not (tmp_path / "out" / "pairs.csv").exists():
        time.sleep(0.05)
    stop.set()
    watcher.join(timeout=20)
    [row] = rows(tmp_path / "out")
    assert (row["name"], row["classes"]) == ("early", "green square:1")
    assert summaries[0].quarantined_files == 0


def test_refusals_are_one_line(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with pytest.raises(CvtriageError, match="missing: folder not found"):
        watch_folder(tmp_path / "missing", SCAN, settings_for(tmp_path), once=True, model=SquareDetector())
    (tmp_path / "file").write_text("x")
    with pytest.raises(CvtriageError, match="file: not a folder"):
        watch_folder(tmp_path / "file", SCAN, settings_for(tmp_path), once=True, model=SquareDetector())
    inside = load_ingest_config(out=str(folder / "results"))
    with pytest.raises(CvtriageError, match="inside the watched folder"):
        watch_folder(folder, SCAN, inside, once=True, model=SquareDetector())
    stop = threading.Event()
    first = threading.Thread(target=watch_folder, args=(folder, SCAN, settings_for(tmp_path)),
                             kwargs={"model": SquareDetector(), "stop": stop})  # fmt: skip
    first.start()
    try:
        lock, deadline = tmp_path / "out" / "watch.lock", time.time() + 20
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        with pytest.raises(CvtriageError, match=f"another watcher \\(pid {os.getpid()}\\) is using this folder"):
            watch_folder(folder, SCAN, settings_for(tmp_path), once=True, model=SquareDetector())
    finally:
        stop.set()
        first.join(timeout=20)
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(CvtriageError, match="holds the state of watching"):
        watch_folder(other, SCAN, settings_for(tmp_path), once=True, model=SquareDetector())


# Root reads and writes past the permission bits by two capabilities: without them (dropped from
# the bounding set, so the command exec'd next never gets them) root is the folder's owner, no more.
WITHOUT_ROOTS_FILE_ACCESS = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, capability, 0, 0, 0):  # PR_CAPBSET_DROP
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
os.execv(sys.executable, [sys.executable, "-m", "cvtriage.cli", *sys.argv[1:]])
"""


def test_unwritable_folder_is_refused(tmp_path):
    """`cvtriage watch` on a folder its user may read but not write in (as root, a root without
    the capabilities that pass the permission bits). Fails if the folder check asks for reading
    only (cvtriage.ingest.watch, check_folders: `os.R_OK | os.W_OK | os.X_OK` -> `os.R_OK |
    os.X_OK`): the watcher then starts, and would fail at its first bad file."""
    folder = tmp_path / "in"
    folder.mkdir(mode=0o555)
    command = [sys.executable, "-c", WITHOUT_ROOTS_FILE_ACCESS] if os.geteuid() == 0 else [sys.executable, "-m", "cvtriage.cli"]
    try:
        result = subprocess.run([*command, "watch", str(folder), "--once", "--no-dataset", "--out", str(tmp_path / "out")],
                                capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        folder.chmod(0o755)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"cvtriage: error: {folder}: not readable and writable by this user (bad files are moved out of it)"
    ]


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "nowhere"), "--once", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"cvtriage: error: {tmp_path / 'nowhere'}: folder not found"]
    result = CliRunner().invoke(app, ["watch", str(tmp_path), "--pair-timeout", "soon"])
    assert result.exit_code == 2 and "pair_timeout: Value error" not in result.output
    assert "'soon' is not a duration such as 90s, 10m or 2h" in result.output and "Traceback" not in result.output


def test_a_file_no_decoder_identifies_is_its_reason_after_ultralytics_patched_pillow(tmp_path):
    """Ultralytics replaces Image.open with one that installs a HEIF plugin on a file Pillow does
    not identify: offline, a watch stopped with an ImportError on a text file named .jpg."""
    import ultralytics.utils.patches  # noqa: F401  (the replacement, as a scan's model loads it)

    from cvtriage.ingest.pairs import decode_image

    fake = tmp_path / "c.jpg"
    fake.write_text("hi")
    with pytest.raises(CvtriageError, match=r"^c\.jpg: not an image any decoder here reads$"):
        decode_image(fake)

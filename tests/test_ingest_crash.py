"""The crash windows `cvtriage watch`'s exactly-once rests on, each hit on purpose: a watcher
process stopped dead at a named line (cvtriage.files.fault_point, as kill -9 would stop it
there), then restarted, and every pair checked processed exactly once and every bad file
quarantined exactly once. Real watchers (forked processes), SQLite ledger and FiftyOne."""

import csv
import json
import os
import sqlite3
import time
import uuid

import cv2
import fiftyone as fo
import pytest
from square_video import Square, render
from watch_stress import run_watcher_once

from cvtriage.config import load_ingest_config, load_scan_config
from cvtriage.files import FAULT_EXIT_CODE

SCAN = load_scan_config(weights="square-detector", imgsz=96, tile="off", device="cpu")
RED, GREEN = Square(0, 0, 0, 30, 30, side=24), Square(1, 0, 0, 90, 40, side=24)


@pytest.fixture
def watched(tmp_path):
    """(folder, settings) with a FiftyOne dataset of its own, deleted afterwards. Files are
    delivered an hour old (settled at the watcher's first look); a file written during a test
    stays unsettled for the whole test (settle_seconds 60), whatever the machine's load."""
    folder = tmp_path / "in"
    folder.mkdir()
    name = f"test-watch-crash-{uuid.uuid4().hex[:8]}"
    settings = load_ingest_config(out=str(tmp_path / "out"), dataset=name, settle_seconds=60, poll_seconds=0.05,
                                  pair_timeout=3600)  # fmt: skip
    yield folder, settings
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def image_bytes(square: Square) -> bytes:
    return cv2.imencode(".jpg", render([square], 0, 160, 96))[1].tobytes()


def an_hour_old(path) -> None:
    """As if written an hour ago: settled at the watcher's first look."""
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))


def deliver(folder, name: str, square: Square | None = RED, image: str | None = None) -> None:
    """NAME.jpg (or `image`) showing `square`, and NAME.json describing it; square None: the sidecar only."""
    image = image or f"{name}.jpg"
    if square is not None:
        (folder / image).write_bytes(image_bytes(square))
        an_hour_old(folder / image)
    (folder / f"{name}.json").write_text(json.dumps({"lat": 45.5, "lon": 7.25, "image": image}))
    an_hour_old(folder / f"{name}.json")


def state(settings) -> dict:
    """What the watcher left: ledger states, pairs.csv rows, FiftyOne samples, quarantine."""
    out = settings.out
    ledger = sqlite3.connect(f"{out}/ledger.sqlite")
    try:
        pairs = dict(ledger.execute("SELECT name, state FROM pairs").fetchall())
        unfinished = ledger.execute("SELECT COUNT(*) FROM moves WHERE done = 0").fetchone()[0]
    finally:
        ledger.close()
    rows = []
    if os.path.exists(f"{out}/pairs.csv"):
        with open(f"{out}/pairs.csv", newline="") as handle:
            rows = [(row["name"], row["image"], row["classes"]) for row in csv.DictReader(handle)]
    samples = []
    dataset = fo.load_dataset(settings.dataset) if fo.dataset_exists(settings.dataset) else None
    if dataset is not None:
        dataset.reload()  # the watcher processes changed it behind this process's back
    if dataset is not None and len(dataset):
        samples = sorted(zip(dataset.values("pair_name"), (os.path.basename(p) for p in dataset.values("filepath")),
                             dataset.values("detections.detections.label")))  # fmt: skip
    reasons = []
    if os.path.exists(f"{out}/quarantine/reasons.csv"):
        with open(f"{out}/quarantine/reasons.csv", newline="") as handle:
            reasons = [(row["file"], row["quarantined_as"], row["reason"]) for row in csv.DictReader(handle)]
    quarantined = sorted(p for p in os.listdir(f"{out}/quarantine") if p != "reasons.csv") if os.path.isdir(f"{out}/quarantine") else []
    return {"pairs": pairs, "unfinished_moves": unfinished, "rows": sorted(rows), "samples": samples,
            "reasons": reasons, "quarantined": quarantined}  # fmt: skip


def test_pairs_stored_in_fiftyone_but_killed_before_the_ledger_knew_are_stored_once(watched):
    """Fails if a restart stores again what FiftyOne already holds (cvtriage.ingest.pairs,
    PairProcessor._store: drop `if key in stored: continue`): the unique index refuses the
    second sample and the restarted watcher dies."""
    folder, settings = watched
    for name in ("p1", "p2"):
        deliver(folder, name)
    assert run_watcher_once(folder, SCAN, settings, fault="watch-stored") == FAULT_EXIT_CODE
    stopped = state(settings)
    assert stopped["pairs"] == {"p1": "ready", "p2": "ready"} and stopped["rows"] == []
    assert [sample[0] for sample in stopped["samples"]] == ["p1", "p2"]  # stored, not yet marked processed

    assert run_watcher_once(folder, SCAN, settings) == 0
    after = state(settings)
    assert after["pairs"] == {"p1": "processed", "p2": "processed"}
    assert after["rows"] == [("p1", "p1.jpg", "red square:1"), ("p2", "p2.jpg", "red square:1")]
    assert after["samples"] == [("p1", "p1.jpg", ["red square"]), ("p2", "p2.jpg", ["red square"])]


def test_a_quarantine_killed_after_its_row_was_written_is_finished_at_the_next_start(watched):
    """Fails if a start does not finish the moves a kill interrupted (cvtriage.ingest.watch,
    Watcher.__init__: drop `self._finish_moves(self.ledger.unfinished_moves())`): the file, on
    its way to quarantine, is then never moved and stays in the watched folder."""
    folder, settings = watched
    (folder / "notes.txt").write_text("not a frame")
    an_hour_old(folder / "notes.txt")
    deliver(folder, "p1")
    assert run_watcher_once(folder, SCAN, settings, fault="watch-quarantine-planned") == FAULT_EXIT_CODE
    stopped = state(settings)
    assert stopped["unfinished_moves"] == 1 and (folder / "notes.txt").is_file() and stopped["quarantined"] == []

    assert run_watcher_once(folder, SCAN, settings) == 0
    after = state(settings)
    assert after["unfinished_moves"] == 0 and not (folder / "notes.txt").exists()
    assert after["quarantined"] == ["notes.txt"]  # moved once: no notes~2.txt
    [(file, moved_to, reason)] = after["reasons"]
    assert (file, moved_to) == ("notes.txt", "notes.txt") and reason.startswith("notes.txt: not an image")
    assert after["rows"] == [("p1", "p1.jpg", "red square:1")] and len(after["samples"]) == 1


def test_a_second_image_under_one_name_is_quarantined_once_across_a_kill(watched):
    """a.jpg waits for its sidecar; a.png and a.json arrive; the watcher dies as it records the
    quarantine of a.png. Fails if a second image under one name replaces the first
    (cvtriage.ingest.ledger, Ledger.arrive: `if present[kind] is not None and present[kind] !=
    filename:` -> `if False:`): the pair is then processed with a.png, and a.jpg is left."""
    folder, settings = watched
    (folder / "a.jpg").write_bytes(image_bytes(RED))
    an_hour_old(folder / "a.jpg")
    assert run_watcher_once(folder, SCAN, settings) == 0
    assert state(settings)["pairs"] == {"a": "waiting"}
    (folder / "a.png").write_bytes(image_bytes(GREEN))
    an_hour_old(folder / "a.png")
    deliver(folder, "a", square=None)
    assert run_watcher_once(folder, SCAN, settings, fault="watch-quarantine-planned") == FAULT_EXIT_CODE
    assert state(settings)["unfinished_moves"] == 1

    assert run_watcher_once(folder, SCAN, settings) == 0
    after = state(settings)
    assert after["rows"] == [("a", "a.jpg", "red square:1")]
    assert after["samples"] == [("a", "a.jpg", ["red square"])]
    assert after["quarantined"] == ["a.png"]
    assert [reason for *_, reason in after["reasons"]] == ["a.png: a second image for a (the pair already has a.jpg)"]
    assert sorted(os.listdir(folder)) == ["a.jpg", "a.json"]


def test_a_file_rewritten_after_it_settled_is_processed_once_as_rewritten(watched):
    """a.jpg settles and is recorded, then is rewritten (a red square becomes a green one) while
    the watcher is down; a restart finds it half-written. Fails if processing does not compare
    the file with the stamp it settled at (cvtriage.ingest.pairs, PairProcessor.check: drop
    `return (kind,)` after the stamp comparison): the half-written image is then read, does not
    decode, and the sound pair goes to quarantine."""
    folder, settings = watched
    deliver(folder, "a", RED)
    assert run_watcher_once(folder, SCAN, settings, fault="watch-recorded") == FAULT_EXIT_CODE
    assert state(settings)["pairs"] == {"a": "ready"}
    rewritten = image_bytes(GREEN)
    with open(folder / "a.jpg", "wb") as handle:  # a writer halfway through the new image, just now
        handle.write(rewritten[: len(rewritten) // 2])
    # The restart sees the change before the file settles again, and waits for that half again;
    # stopped right there.
    assert run_watcher_once(folder, SCAN, settings, fault="watch-half-forgotten") == FAULT_EXIT_CODE
    stopped = state(settings)
    assert stopped["pairs"] == {"a": "waiting"} and stopped["quarantined"] == [] and stopped["samples"] == []
    with open(folder / "a.jpg", "ab") as handle:
        handle.write(rewritten[len(rewritten) // 2 :])
    an_hour_old(folder / "a.jpg")

    assert run_watcher_once(folder, SCAN, settings) == 0
    after = state(settings)
    assert after["rows"] == [("a", "a.jpg", "green square:1")]
    assert after["samples"] == [("a", "a.jpg", ["green square"])]
    assert after["quarantined"] == [] and after["pairs"] == {"a": "processed"}

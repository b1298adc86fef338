"""The watcher under fire, for tests/test_ingest_stress.py (CI size) and benchmarks/watch_stress.py
(5,000 pairs): a thread drops pairs into a folder in random order with random delays, with
re-delivered duplicates, junk, half-written files, sidecars naming another image, malformed and
oversized JSON, truncated images and lone halves, while the watcher process is killed with
SIGKILL and restarted; then every promise is checked against what was delivered.

Watcher processes are forked from a forkserver that has imported cvtriage, FiftyOne and
Ultralytics once (a fresh interpreter takes ~6 s to import them): each restart is immediate, and
each child opens its own database connections, as a new `cvtriage watch` would.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PRELOAD = ["cvtriage.ingest.watch", "cvtriage.scan.outputs", "fiftyone", "ultralytics.engine.results", "torch", "watch_stress"]


class NoOpDetector:
    """The Ultralytics predict interface, finding nothing: the watcher's own cost, without a model's."""

    names = {0: "object"}
    task = "detect"

    def predict(self, images, **_ignored):
        import torch
        from ultralytics.engine.results import Results

        return [Results(image, path="", names=self.names, boxes=torch.zeros((0, 6))) for image in images]


def _watch_child(folder: str, scan, settings, once: bool, model_kind: str, log: str, fault: str | None = None) -> None:
    from cvtriage.files import FAULT_ENV
    from cvtriage.ingest.watch import watch_folder

    if fault is not None:  # this child stops dead at that point (cvtriage.files.fault_point)
        os.environ[FAULT_ENV] = fault

    if model_kind == "noop":
        model = NoOpDetector()
    elif model_kind == "square":
        from square_video import SquareDetector

        model = SquareDetector()
    else:
        model = None  # scan.weights
    # Ctrl-C as for `cvtriage watch` in a shell (a forkserver's children may inherit it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The watcher's notes and warnings, one a line, as `cvtriage watch` prints them.
    logger = logging.getLogger("cvtriage")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.FileHandler(log))
    watch_folder(Path(folder), scan, settings, once=once, model=model)


def jpeg(width: int, height: int, seed: int) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 110, np.uint8)
    x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
    image[y : y + 16, x : x + 16] = (40, 40, 230)  # a red square: SquareDetector finds it
    ok, data = cv2.imencode(".jpg", image)
    return data.tobytes()


@dataclass
class Plan:
    """What is delivered, and what each delivered name must become."""

    deliveries: list[tuple[str, bytes, str]] = field(default_factory=list)  # (file name, content, how)
    good: set[str] = field(default_factory=set)  # pair names to be processed exactly once
    bad: dict[str, str] = field(default_factory=dict)  # file name -> expected words of its reason
    lone: set[str] = field(default_factory=set)  # pair names of lone halves
    ignored: set[str] = field(default_factory=set)  # in-progress names: never touched


def make_plan(pairs: int, seed: int, size: tuple[int, int]) -> Plan:
    rng = random.Random(seed)
    plan = Plan()
    few = max(2, pairs // 50)
    images = [jpeg(*size, seed=n) for n in range(16)]

    def sidecar(name: str, image: str | None = None) -> bytes:
        return json.dumps({"latitude": 45 + rng.random() / 100, "longitude": 7 + rng.random() / 100,
                           "altitude": 120.0, "image": image or f"{name}.jpg"}).encode()  # fmt: skip

    for number in range(pairs):
        name = f"pair{number:05d}"
        how = "half-written" if number % 20 == 3 else "renamed" if number % 10 == 5 else "direct"
        plan.deliveries += [(f"{name}.jpg", images[number % 16], how), (f"{name}.json", sidecar(name), "direct")]
        plan.good.add(name)
        if number % 20 == 7:  # re-delivered later, as a sync tool does: a temporary name, renamed
            plan.deliveries += [(f"{name}.jpg", images[number % 16], "renamed"), (f"{name}.json", sidecar(name), "renamed")]
    for number in range(few):
        plan.deliveries.append((f"junk{number}.txt", b"not a frame", "direct"))
        plan.bad[f"junk{number}.txt"] = "not an image"
        wrong, malformed, cut, big = f"wrong{number}", f"malformed{number}", f"cut{number}", f"big{number}"
        plan.deliveries += [(f"{wrong}.jpg", images[0], "direct"), (f"{wrong}.json", sidecar(wrong, "someone-else.jpg"), "direct")]
        plan.bad.update({f"{wrong}.jpg": "describes someone-else.jpg", f"{wrong}.json": "describes someone-else.jpg"})
        plan.deliveries += [(f"{malformed}.jpg", images[1], "direct"), (f"{malformed}.json", b'{"latitude": 45.1,', "direct")]
        plan.bad.update({f"{malformed}.jpg": "not valid JSON", f"{malformed}.json": "not valid JSON"})
        plan.deliveries += [(f"{cut}.jpg", images[2][: len(images[2]) // 2], "direct"), (f"{cut}.json", sidecar(cut), "direct")]
        plan.bad.update({f"{cut}.jpg": "does not decode", f"{cut}.json": "does not decode"})
        plan.deliveries += [(f"{big}.jpg", images[3], "direct"), (f"{big}.json", b'{"pad": "' + b"x" * 3000 + b'"}', "direct")]
        plan.bad.update({f"{big}.jpg": "over the sidecar size limit", f"{big}.json": "over the sidecar size limit"})
        lone = f"lone{number}"
        plan.deliveries.append((f"{lone}.jpg", images[4], "direct") if number % 2 else (f"{lone}.json", sidecar(lone), "direct"))
        plan.lone.add(lone)
    plan.deliveries.append((".DS_Store", b"finder", "direct"))
    plan.ignored.add(".DS_Store")
    rng.shuffle(plan.deliveries)
    return plan


# A writer pausing mid-file: shorter than the watcher's settle_seconds in these runs.
HALF_WRITTEN_PAUSE_S = 0.3


def _finish_writing(handle, rest: bytes) -> None:
    handle.write(rest)
    handle.close()


def deliver(folder: Path, plan: Plan, mean_delay_s: float, seed: int, progress: list[int]) -> None:
    """Drop every file of the plan, in its (random) order, with random delays."""
    rng = random.Random(seed)
    writers = []
    for name, content, how in plan.deliveries:
        path = folder / name
        if how == "renamed":
            temporary = folder / f".{name}.part"
            temporary.write_bytes(content)
            os.replace(temporary, path)
        elif how == "half-written":  # open, half now, the rest a little later, then closed
            handle = open(path, "wb")
            handle.write(content[: len(content) // 2])
            handle.flush()
            writer = threading.Timer(HALF_WRITTEN_PAUSE_S, _finish_writing, args=(handle, content[len(content) // 2 :]))
            writer.start()
            writers.append(writer)
        else:
            path.write_bytes(content)
        progress[0] += 1
        time.sleep(rng.expovariate(1 / mean_delay_s) if mean_delay_s else 0)
    for writer in writers:
        writer.join()


def watcher_processes():
    """The forkserver context watchers are started from (its server imports PRELOAD once)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def run_watcher_once(folder: Path, scan, settings, fault: str | None = None, model_kind: str = "square") -> int:
    """`cvtriage watch --once` in a process of its own, stopped dead at the `fault` point if it
    reaches it; returns its exit code (cvtriage.files.FAULT_EXIT_CODE when it stopped there)."""
    from cvtriage.database import connect_database

    connect_database()  # this process starts or joins FiftyOne's database, so no stopped child owns it
    log = str(Path(settings.out).parent / f"{Path(settings.out).name}.log")
    child = watcher_processes().Process(target=_watch_child, args=(str(folder), scan, settings, True, model_kind, log, fault))
    child.start()
    child.join(timeout=300)
    if child.exitcode is None:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    return child.exitcode


@dataclass
class StressResult:
    pairs: int
    files_dropped: int
    killed: list[int]  # the watcher processes that died of a SIGKILL once at work
    seconds: float  # from the first delivery to the end of the final pass
    processed_rows: int
    problems: list[str]


def run_stress(folder: Path, out: Path, scan, settings, pairs: int, kills: int = 3, model_kind: str = "noop",
               mean_delay_s: float = 0.002, seed: int = 0, size: tuple[int, int] = (96, 64)) -> StressResult:  # fmt: skip
    """Deliver, kill and restart the watcher `kills` times, stop it, run a final `--once` pass,
    and check everything. `problems` is empty when every promise held."""
    from cvtriage.database import connect_database

    # This process starts or joins FiftyOne's database, as a command would, so no killed child owns it.
    connect_database()
    context = watcher_processes()
    plan = make_plan(pairs, seed, size)
    folder.mkdir(parents=True, exist_ok=True)
    log = str(out.parent / f"{out.name}.log")
    progress = [0]
    rng = random.Random(seed + 1)

    def start(once: bool = False):
        child = context.Process(target=_watch_child, args=(str(folder), scan, settings, once, model_kind, log))
        child.start()
        return child

    started = time.monotonic()
    child = start()
    dropper = threading.Thread(target=deliver, args=(folder, plan, mean_delay_s, seed, progress))
    dropper.start()
    killed: list[int] = []
    for kill in range(kills):
        # A kill at a random moment once the watcher is at work (its log says it processed a batch).
        target = (kill + 1) / (kills + 1) * len(plan.deliveries)
        while progress[0] < target and dropper.is_alive():
            time.sleep(0.01)
        mark = os.path.getsize(log) if os.path.exists(log) else 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _processed_since(log, mark):
            time.sleep(0.02)
        at_work = _processed_since(log, mark)
        time.sleep(rng.uniform(0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        if at_work and child.exitcode == -signal.SIGKILL:  # not a watcher that had already stopped
            killed.append(child.pid)
        child = start()
    dropper.join()
    deadline = time.monotonic() + 60  # up and watching (Ctrl-C during start-up is another story)
    while time.monotonic() < deadline and _log_count(log, b"Watching ") < kills + 1:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGINT)  # the normal way to stop a watcher
    child.join(timeout=60)
    problems = [] if child.exitcode == 0 else [f"the watcher did not stop on Ctrl-C (exit code {child.exitcode})"]
    if child.exitcode is None:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    time.sleep(settings.pair_timeout)  # so the last lone half is old enough to be reported
    final = start(once=True)
    final.join(timeout=600)
    seconds = time.monotonic() - started
    problems += [f"final pass exit code {final.exitcode} (see {log})"] if final.exitcode != 0 else []
    problems += check(folder, out, settings, plan)
    rows = _pairs_csv(out)
    return StressResult(pairs, len(plan.deliveries), killed, seconds, len(rows), problems)


def _log_count(log: str, words: bytes) -> int:
    if not os.path.exists(log):
        return 0
    with open(log, "rb") as handle:
        return handle.read().count(words)


def _processed_since(log: str, mark: int) -> bool:
    if not os.path.exists(log):
        return False
    with open(log, "rb") as handle:
        handle.seek(mark)
        return b"processed" in handle.read()


def _pairs_csv(out: Path) -> list[dict]:
    with open(out / "pairs.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def check(folder: Path, out: Path, settings, plan: Plan) -> list[str]:
    import fiftyone as fo

    problems = []
    rows = Counter(row["name"] for row in _pairs_csv(out))
    twice = sorted(name for name, count in rows.items() if count > 1)
    if twice:
        problems.append(f"pairs.csv lists {len(twice)} pairs more than once: {twice[:5]}")
    if set(rows) != plan.good:
        problems.append(f"pairs.csv: missing {sorted(plan.good - set(rows))[:5]}, unexpected {sorted(set(rows) - plan.good)[:5]}")
    if settings.dataset is not None:
        keys = Counter(fo.load_dataset(settings.dataset).values("pair_name"))
        if any(count > 1 for count in keys.values()) or set(keys) != plan.good:
            problems.append(f"FiftyOne: {sum(keys.values())} samples for {len(plan.good)} pairs")
    with open(out / "quarantine" / "reasons.csv", newline="") as handle:
        reasons = {row["file"]: row for row in csv.DictReader(handle)}
    for name, words in plan.bad.items():
        row = reasons.get(name)
        if row is None or words not in row["reason"]:
            problems.append(f"{name}: expected in quarantine for '{words}', reasons.csv says {row}")
        elif not (out / "quarantine" / row["quarantined_as"]).is_file():
            problems.append(f"{name}: listed in reasons.csv but not in quarantine/")
    unexpected = set(reasons) - set(plan.bad)
    if unexpected:
        problems.append(f"quarantined though sound: {sorted(unexpected)[:5]}")
    with open(out / "lone_halves.csv", newline="") as handle:
        lone = {row["name"] for row in csv.DictReader(handle)}
    if lone != plan.lone:
        problems.append(f"lone halves reported {sorted(lone)[:5]}..., expected {sorted(plan.lone)[:5]}...")
    delivered = {name for name, _, _ in plan.deliveries}
    present = {path.name for path in folder.iterdir()}
    gone = delivered - present - set(plan.bad)
    if gone:
        problems.append(f"gone from the folder though not bad: {sorted(gone)[:5]}")
    if present - delivered:
        problems.append(f"left behind in the folder: {sorted(present - delivered)[:5]}")
    if set(plan.bad) & present:
        problems.append(f"bad files still in the folder: {sorted(set(plan.bad) & present)[:5]}")
    return problems

"""`benchmarks/watch_stress.py` beside the review loop's database work, on one FiftyOne database:
does the watcher hold every promise, and at what rate, against the same run alone?

The review loop's database work (benchmarks/review_loop.py takes an hour at its defaults, most of
it training, which does not touch the database): a neighbour process that, over and over, scans a
6 s synthetic flyover into a dataset at the review confidence (events, looks index, saved views,
under the dataset's write lease), tags every event as review_loop's simulated reviewer would, and
harvests the decisions. Rounds alternate the watcher alone and beside the neighbour (started
first, and at work: it has stored a scan), each on a database folder of its own, so both see the
same machine; the medians of pairs per second and their ratio are printed. Target: every promise
held, and the rate beside within 3x of the rate alone.

FiftyOne joins any database service its OS user runs, whatever the folder: with the App open, both
runs share it.

    python benchmarks/watch_beside_review.py [--pairs 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"no-op: ([\d,]+) pairs in ([\d.]+) s, ([\d.]+) pairs/s, (\d+) problems")
NEIGHBOUR_DATASET = "bench-review-neighbour"


def neighbour(work: Path) -> None:
    """The review loop's database work, turn after turn, until SIGINT (the turn at hand finishes)."""
    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    import review_loop  # noqa: E402 (sets the CLI's environment before fiftyone loads)

    from cvtriage.config import load_harvest_config, load_scan_config
    from cvtriage.database import connect_database
    from cvtriage.paths import DEMO_WEIGHTS
    from cvtriage.review.harvest import harvest
    from cvtriage.scan.pipeline import run_scan
    from cvtriage.scan.results import read_scan_run
    from cvtriage.synth.video import FlyoverSpec, generate_video

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    connect_database()
    import fiftyone as fo

    video = work / "flyover.mp4"
    generate_video(video, FlyoverSpec(seconds=6, seed=101))
    truth = review_loop.truth_of(video)
    turn = 0
    while not stop:
        turn += 1
        started = time.monotonic()
        settings = load_scan_config(weights=str(DEMO_WEIGHTS), conf=0.1, out=str(work / "scans"), replace_decisions=True)
        settings.dataset = NEIGHBOUR_DATASET
        results = run_scan(video, settings).out_dir
        dataset = fo.load_dataset(NEIGHBOUR_DATASET)
        events = read_scan_run(results).events
        ids, event_ids = dataset.values("id"), dataset.values("event_id")
        tags = {sample: review_loop.reviewer_tag(events[event], truth) for sample, event in zip(ids, event_ids)}
        review_loop.decide(dataset, ids, len(ids), tags)
        harvested = work / f"harvest-{turn}"
        harvest(NEIGHBOUR_DATASET, harvested, load_harvest_config())
        shutil.rmtree(harvested)
        print(f"turn {turn}: {len(ids)} events scanned, decided and harvested in {time.monotonic() - started:.1f} s", flush=True)
    fo.delete_dataset(NEIGHBOUR_DATASET)


def watch_stress(pairs: int, env: dict, log: Path) -> tuple[float, int, bool]:
    """(pairs per second, problems, a traceback anywhere) of one benchmarks/watch_stress.py run."""
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "watch_stress.py"), "--pairs", str(pairs), "--models", "noop"]
    with log.open("w") as handle:
        subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=1800)
    text = log.read_text()
    found = SUMMARY.search(text)
    if found is None:
        return 0.0, -1, "Traceback" in text
    return float(found[3]), int(found[4]), "Traceback" in text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--neighbour", type=Path, help=argparse.SUPPRESS)  # the neighbour process's work folder
    args = parser.parse_args()
    if args.neighbour:
        neighbour(args.neighbour)
        return
    base = Path(tempfile.mkdtemp(prefix="cvtriage-watch-beside-review-"))
    rates: dict[str, list[float]] = {"alone": [], "beside": []}
    failures = []
    for round_number in range(1, args.rounds + 1):
        for mode in ("alone", "beside"):
            work = base / f"{mode}-{round_number}"
            work.mkdir()
            env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(work / "db")}
            env.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
            neighbour_process = neighbour_log = None
            if mode == "beside":
                neighbour_log = (work / "neighbour.log").open("w")
                neighbour_process = subprocess.Popen(
                    [sys.executable, __file__, "--neighbour", str(work)], env=env, stdout=neighbour_log, stderr=subprocess.STDOUT
                )
                while "turn 1:" not in (work / "neighbour.log").read_text() and neighbour_process.poll() is None:
                    time.sleep(1)
            rate, problems, traceback = watch_stress(args.pairs, env, work / "watch_stress.log")
            turns = ""
            if neighbour_process is not None:
                neighbour_process.send_signal(signal.SIGINT)
                neighbour_process.wait(600)
                neighbour_log.close()
                text = (work / "neighbour.log").read_text()
                traceback = traceback or "Traceback" in text
                turns = f", neighbour: {text.count('turn ')} turns, exit {neighbour_process.returncode}"
                if neighbour_process.returncode != 0:
                    failures.append(f"round {round_number}: the neighbour exited {neighbour_process.returncode}")
            rates[mode].append(rate)
            if problems != 0 or traceback:
                failures.append(f"round {round_number} {mode}: {problems} problems{', a traceback' if traceback else ''} ({work})")
            print(f"round {round_number} {mode:6s}: {rate:5.1f} pairs/s, {problems} problems"
                  f"{', TRACEBACK' if traceback else ''}{turns}", flush=True)  # fmt: skip
    alone, beside = statistics.median(rates["alone"]), statistics.median(rates["beside"])
    print(f"watch_stress.py --pairs {args.pairs} --models noop, median of {args.rounds} rounds: alone {alone:.1f} pairs/s, "
          f"beside the review loop's database work {beside:.1f} pairs/s ({alone / max(beside, 1e-9):.2f}x slower); "
          f"{'every promise held, no traceback' if not failures else f'{len(failures)} failures'}")  # fmt: skip
    for failure in failures:
        print(f"  {failure}")
    if not failures:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

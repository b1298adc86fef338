"""4 `cvtriage scan` commands started at the same moment on a cold local database, N times: how
many fail, and how long it takes (the test in tests/test_concurrency.py, repeated).

Each repetition gets a FIFTYONE_DATABASE_DIR of its own, with no mongod running (in a PID
namespace of its own where the OS allows it: tests/commands_at_once.py), starts the 4 scans (two
3 s synthetic flyovers, each scanned into two datasets, the demo model at 320 px), then reads the
4 datasets. A repetition fails when a command exits non-zero or prints a traceback, or a dataset
does not hold exactly its scan's events; the events must also equal those of the same scans run
one at a time (once, in this process, without FiftyOne). Timing: from the start of the 4 scans to
the end of the slowest.

    python benchmarks/concurrent_commands.py [--repeat 20] [--scans 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "tests"))  # the harness is shared with the CI test

from cvtriage.cli import prepare_environment  # noqa: E402

prepare_environment()

from commands_at_once import (  # noqa: E402
    events_of,
    make_flyovers,
    read_datasets,
    run_plan,
    scan_alone,
    scan_command,
    stored_events,
)


def check(work: Path, names: list[str], videos: list[Path], stored: dict, alone: dict[Path, list]) -> list[str]:
    problems = []
    for name, video in zip(names, videos):
        results = work / name / video.stem
        if events_of(results) != alone[video]:
            problems.append(f"{name}: events.json differs from the scan run alone")
        if stored[name]["events"] != stored_events(video, results):
            problems.append(f"{name}: the dataset holds {len(stored[name]['events'])} events, events.json {len(alone[video])}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--scans", type=int, default=4, help="scans started at once")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a repetition may take before it counts as hung")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cvtriage-at-once-"))
    flyovers = make_flyovers(base)
    alone = {video: scan_alone(video, base / "alone") for video in flyovers}
    videos = [flyovers[number % 2] for number in range(args.scans)]
    names = [f"at-once-{number}" for number in range(args.scans)]
    failed, step_seconds, not_cold = 0, [], 0
    for repetition in range(1, args.repeat + 1):
        work = base / f"repetition-{repetition}"
        plan = [{"together": [scan_command(video, work / name, name) for name, video in zip(names, videos)]},
                {"together": [read_datasets(names)]}]  # fmt: skip
        result = run_plan(plan, work / "db", work / "plan", timeout_s=args.timeout)
        problems = result.failures()
        if not problems:
            problems = check(work, names, videos, json.loads(result.steps[-1][0].stdout.strip().splitlines()[-1]), alone)
        scans = result.steps[0]
        step_seconds.append(max(outcome.seconds for outcome in scans))
        not_cold += not result.cold
        failed += bool(problems)
        print(f"{repetition:3d}: {'FAILED' if problems else 'ok':6s} {args.scans} scans in {step_seconds[-1]:5.1f} s "
              f"(fastest {min(o.seconds for o in scans):.1f} s){'' if result.cold else ', NOT a cold start'}", flush=True)  # fmt: skip
        for problem in problems:
            print(f"     {problem}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    isolation = "each in a PID namespace of its own" if result.isolated else "no PID namespace (unshare unavailable)"
    print(f"{failed} of {args.repeat} repetitions failed; {args.scans} scans at once on a cold database ({isolation}): "
          f"median {statistics.median(step_seconds):.1f} s, max {max(step_seconds):.1f} s"
          + (f"; {not_cold} were not cold starts (another FiftyOne service was running)" if not_cold else ""))  # fmt: skip
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`cvtriage watch` under fire at 5,000 pairs: pairs per second with a no-op detector (the
watcher's own cost: settling, ledger, decoding, FiftyOne, pairs.csv) and with the demo model.

The run of tests/test_ingest_stress.py at full size (tests/watch_stress.py): a thread drops the
pairs into a folder in random order with random delays (plus re-delivered duplicates, junk,
half-written files, sidecars naming another image, malformed and oversized JSON, truncated
images and lone halves) while the watcher process is killed with SIGKILL and restarted three
times; then a final `--once` pass, and every promise checked. Pairs per second = pairs
processed / wall time from the first file dropped to the end of the final pass (kills, restarts
and quarantines included). Images are 640x480 JPEGs.

    python benchmarks/watch_stress.py                       # 5,000 pairs, no-op detector and the demo model
    python benchmarks/watch_stress.py --pairs 500 --models noop
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

from cvtriage.cli import prepare_environment
from cvtriage.paths import DEMO_WEIGHTS

prepare_environment()
sys.path.insert(0, str(PROJECT_ROOT / "tests"))  # the stress harness is shared with the CI test

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from watch_stress import run_stress  # noqa: E402

from cvtriage.config import load_ingest_config, load_scan_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--demo-pairs", type=int, default=None, help="pairs for the demo model (default --pairs)")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--models", default="noop,demo", help="noop, demo, or both, comma-separated")
    parser.add_argument("--mean-delay", type=float, default=0.0005, help="mean seconds between two files dropped")
    args = parser.parse_args()
    import fiftyone as fo

    from cvtriage.database import connect_database

    connect_database()  # started or joined safely beside other commands starting at the same time

    console = Console()
    table = Table(title=f"cvtriage watch, killed {args.kills} times")
    for column in ("detector", "pairs", "files dropped", "pairs processed", "wall time", "pairs/s", "every promise held"):
        table.add_column(column, justify="left" if column == "detector" else "right")
    for kind in [k.strip() for k in args.models.split(",") if k.strip()]:
        work = Path(tempfile.mkdtemp(prefix=f"cvtriage-watch-{kind}-"))
        dataset = f"bench-watch-{kind}"
        if fo.dataset_exists(dataset):
            fo.delete_dataset(dataset)
        settings = load_ingest_config(
            out=str(work / "out"), dataset=dataset, pair_timeout=2.0, settle_seconds=1.0, poll_seconds=0.1,
            rescan_seconds=10.0, max_sidecar_bytes=2000,
        )
        weights = str(DEMO_WEIGHTS) if kind == "demo" else "no-op"
        scan = load_scan_config(weights=weights, imgsz=640, device="cpu")
        pairs = args.demo_pairs if kind == "demo" and args.demo_pairs else args.pairs
        result = run_stress(work / "in", work / "out", scan, settings, pairs, kills=args.kills,
                            model_kind="noop" if kind == "noop" else "weights", mean_delay_s=args.mean_delay,
                            size=(640, 480))  # fmt: skip
        label = "no-op" if kind == "noop" else f"demo model ({Path(weights).name}, 640 px, CPU)"
        table.add_row(
            label, f"{pairs:,}", f"{result.files_dropped:,}", f"{result.processed_rows:,}", f"{result.seconds:.1f} s",
            f"{result.processed_rows / result.seconds:.1f}", "yes" if not result.problems else "NO",
        )  # fmt: skip
        console.print(f"{label}: {result.processed_rows:,} pairs in {result.seconds:.1f} s, "
                      f"{result.processed_rows / result.seconds:.1f} pairs/s, {len(result.problems)} problems")
        for problem in result.problems:
            console.print(f"[red]{kind}: {problem}[/]", soft_wrap=True)
        fo.delete_dataset(dataset)
        shutil.rmtree(work, ignore_errors=True)
    console.print(table)


if __name__ == "__main__":
    main()

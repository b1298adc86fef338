"""Does cleaning labels matter? Val mAP50 after training on noisy labels, on noisy labels minus
what the audit flagged, and on clean labels: same start weights, epochs, seed and clean val split.

The whole good-data loop, through the commands a user runs:
  1. cvtriage synth dataset       a synthetic aerial dataset with exact labels (clean)
  2. cvtriage inject-errors       a copy with --rate label errors in its train split (noisy)
  3. cvtriage train  noisy        (a) trained on the noisy labels
  4. cvtriage audit-labels noisy  rank the noisy train labels with model (a)'s predictions
  5. cvtriage train  noisy --exclude audit.csv    (b) noisy minus the flagged images
  6. cvtriage train  clean        (c) trained on the clean labels

The defaults fit a CPU (about half an hour on an idle 2-core machine); on a GPU raise --images
and --epochs. Start weights: a real pretrained detector, as a user would fine-tune: the COCO
YOLOv8n checkpoint in ../shared/data when present (it knows none of the four classes), else
yolo11n.pt (downloaded when online); or --weights. Not the shipped demo model: it was trained on
clean synthetic labels of these very classes, so it would start every run ahead and hide the gaps.

    python benchmarks/clean_vs_noisy.py [--images 400] [--epochs 20] [--imgsz 320] [--rate 0.1] [--weights W]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

from rich.console import Console
from rich.table import Table

from cvtriage.labels.yolo import read_yolo_dataset

console = Console()
SHARED_COCO_WEIGHTS = PROJECT_ROOT.parent / "shared" / "data" / "weights" / "yolov8n-coco.pt"


def cvtriage(*args: str) -> None:
    """One cvtriage command, its progress shown as it runs; stop the benchmark if it fails."""
    console.print(f"[bold]$ cvtriage {' '.join(args)}[/]")
    completed = subprocess.run([sys.executable, "-m", "cvtriage.cli", *args])
    if completed.returncode != 0:
        sys.exit(f"benchmark stopped: `cvtriage {args[0]}` exited with {completed.returncode}")


def val_labels(data: Path) -> dict[str, str]:
    """Val image name -> its label text, to check that every run is evaluated on the same labels."""
    dataset = read_yolo_dataset(data)
    return {
        image.image_path.name: image.label_path.read_text() if image.has_label_file else ""
        for image in dataset.images("val")
    }


def images_with_injected_errors(noisy: Path) -> set[Path]:
    manifest = json.loads((noisy / "manifest.json").read_text())
    return {(noisy / error["image_path"]).resolve() for error in manifest["errors"] if error["split"] == "train"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400, help="images in all (20%% go to val)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--rate", type=float, default=0.1, help="fraction of train boxes given a label error")
    parser.add_argument("--weights", default=str(SHARED_COCO_WEIGHTS) if SHARED_COCO_WEIGHTS.is_file() else "yolo11n.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks/clean-vs-noisy"), help="new or empty folder")
    args = parser.parse_args()

    work = args.work.resolve()
    if work.exists() and any(work.iterdir()):
        sys.exit(f"{work}: not empty; pass a new --work folder")
    clean, noisy, runs, audit = work / "clean", work / "noisy", work / "runs", work / "audit"
    common = ["--weights", args.weights, "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
              "--seed", str(args.seed), "--device", args.device, "--out", str(runs)]  # fmt: skip
    started = time.monotonic()
    seconds: dict[str, float] = {}

    def timed(step: str, *command: str) -> None:
        step_started = time.monotonic()
        cvtriage(*command)
        seconds[step] = time.monotonic() - step_started

    # Images drawn at the training size, objects 16-96 px: the benchmark is about label noise, not tiny objects.
    timed("synth", "synth", "dataset", str(clean), "--images", str(args.images), "--imgsz", str(args.imgsz),
          "--min-size", "16", "--max-size", str(min(96, args.imgsz // 2)), "--seed", str(args.seed))  # fmt: skip
    timed("inject", "inject-errors", str(clean), str(noisy), "--rate", str(args.rate), "--seed", str(args.seed))
    if val_labels(clean) != val_labels(noisy):
        sys.exit("benchmark stopped: inject-errors changed the val labels; the runs would not be comparable")
    timed("noisy", "train", str(noisy), *common, "--name", "noisy")
    timed("audit", "audit-labels", str(noisy), "--weights", str(runs / "noisy" / "weights" / "best.pt"),
          "--split", "train", "--imgsz", str(args.imgsz), "--device", args.device, "--out", str(audit),
          "--dataset", "cvtriage-benchmark-noisy")  # fmt: skip
    timed("noisy-audited", "train", str(noisy), *common, "--name", "noisy-audited", 
          "--exclude", str(audit / "audit.csv"))  # fmt: skip
    timed("clean", "train", str(clean), *common, "--name", "clean")

    labels = {
        "noisy": "(a) noisy labels",
        "noisy-audited": "(b) noisy minus audit-flagged",
        "clean": "(c) clean labels",
    }
    results = {name: json.loads((runs / name / "metrics.json").read_text()) for name in labels}
    table = Table(
        title=f"Val mAP on the same clean val split: {args.epochs} epochs at {args.imgsz} px, seed {args.seed}, "
        f"from {args.weights}"
    )
    for column in ("run", "train images", "mAP50", "mAP50-95", "wall time"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, metrics in results.items():
        table.add_row(
            labels[name], str(metrics["train_images"]), f"{metrics['overall']['map50']:.3f}",
            f"{metrics['overall']['map50_95']:.3f}", f"{seconds[name]:.0f} s",
        )  # fmt: skip
    console.print(table)

    corrupted = images_with_injected_errors(noisy)
    excluded = {Path(image) for image in results["noisy-audited"]["excluded_images"]}
    console.print(
        f"Label errors: {args.rate:.0%} of train boxes, in {len(corrupted)} train images. The audit's flags "
        f"excluded {len(excluded)} images, {len(excluded & corrupted)} of them with an injected error "
        f"({len(excluded & corrupted) / max(len(corrupted), 1):.0%} of the corrupted images)."
    )
    console.print(
        "Wall time: " + ", ".join(f"{step} {value:.0f} s" for step, value in seconds.items())
        + f"; total {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()

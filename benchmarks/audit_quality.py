"""How many injected label errors does `audit-labels` find, against FiftyOne Brain and cleanlab?

A clean synthetic dataset (cvtriage.synth, a seed the demo model was not trained on; --ground
street for busy street ground, the model was trained on plain ground only) gets 5% label errors
(cvtriage inject-errors, every split), then one audit run with the demo detector.
For each kind, with N errors of that kind injected, it prints the share of them found in the
top 2N of each method's ranking for that kind:

- cvtriage:  audit-labels' ranking of that kind;
- FiftyOne:  compute_mistakenness with its fixed thresholds: `mistakenness` (class),
             `mistakenness_loc` (location), labels flagged `possible_spurious` (no order: dataset
             order), predictions flagged `possible_missing` ordered by confidence;
- cleanlab:  ObjectLab's per-box scores (cleanlab.object_detection.rank): swap (class),
             badloc (location), overlooked (missing); it has no spurious-box score.

A second table says what 90% would take: per kind, the score down to which cvtriage's ranking
must go to hold 90% of the injected errors, and how many findings that are not injected errors
score at least that much (more than 2N - 0.9N of them: the model's evidence falls short, not the
order). A third table says what audit-labels flags with its per-kind thresholds, and how many of
the flagged findings are injected errors. It also prints the end-to-end time of the audit (load, predict, evaluate, mistakenness,
rank, tag, write reports). Target: >= 90% for every kind, no kind below either reference; <= 3 min.

    nice -n 15 python benchmarks/audit_quality.py [--ground plain|street] [--images 1000] [--imgsz 640] [--rate 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

import numpy as np

from cvtriage.cli import prepare_environment

# The CLI's defaults (FiftyOne quiet and untracked, Ultralytics' font), set before fiftyone loads.
prepare_environment()
os.environ.setdefault("YOLO_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cvtriage.audit.findings import KINDS  # noqa: E402
from cvtriage.audit.image_labels import read_image_labels  # noqa: E402
from cvtriage.audit.inject import MANIFEST_NAME, inject_errors  # noqa: E402
from cvtriage.audit.pipeline import audit_labels, quiet_fiftyone  # noqa: E402
from cvtriage.audit.predictions import PREDICTIONS  # noqa: E402
from cvtriage.audit.store import compute_fiftyone_mistakenness  # noqa: E402
from cvtriage.boxes import iou_matrix  # noqa: E402
from cvtriage.cli.audit import AuditStageBars  # noqa: E402
from cvtriage.config import load_audit_config  # noqa: E402
from cvtriage.labels.fiftyone_loading import GROUND_TRUTH  # noqa: E402
from cvtriage.paths import DEMO_WEIGHTS  # noqa: E402
from cvtriage.synth.dataset import GROUNDS  # noqa: E402

console = Console()
# The target: this share of each kind's injected errors in the top 2N of its ranking.
TARGET_SHARE = 0.9


def ground_suffix(ground: str) -> str:
    """Folder names: the plain ground keeps the names it had before street ground existed (cached data)."""
    return "" if ground == "plain" else f"-{ground}"


def clean_dataset(work: Path, images: int, imgsz: int, seed: int, ground: str) -> Path:
    """The clean synthetic dataset (cached: drawing 1,000 images takes minutes)."""
    from cvtriage.synth.dataset import generate_dataset

    out = work / f"synth-{images}-{imgsz}-seed{seed}{ground_suffix(ground)}"
    if not (out / "data.yaml").is_file():
        console.print(f"Drawing {images} synthetic images at {imgsz} px (seed {seed}, {ground} ground) into {out} ...")
        # The demo model's objects: 10-120 px long side (see weights/README.md).
        generate_dataset(out, images=images, imgsz=imgsz, seed=seed, min_size=10, max_size=120, force=True, ground=ground)
    return out / "data.yaml"


def injected_targets(manifest_path: Path, dataset) -> dict[str, list[dict]]:
    """Each injected error with what a ranking must point at: a label id (class, spurious,
    location) or, for a deleted box, the image and the original box (x1 y1 x2 y2)."""
    out_dir = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())
    filepaths, label_ids, label_indices = dataset.values(
        ["filepath", f"{GROUND_TRUTH}.detections.id", f"{GROUND_TRUTH}.detections.label_index"]
    )
    label_by_line = {
        (path, index): label_id
        for path, ids, indices in zip(filepaths, label_ids, label_indices)
        for label_id, index in zip(ids or [], indices or [])
    }
    targets: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for error in manifest["errors"]:
        image = str((out_dir / error["image_path"]).resolve())
        if error["kind"] == "missing":
            cx, cy, w, h = map(float, error["original"].split()[1:])
            targets["missing"].append({"image": image, "box": [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]})
        else:
            targets[error["kind"]].append({"label_id": label_by_line[(image, error["line_index"])]})
    return targets


def points_at(kind: str, item: str, target: dict, boxes_by_pred: dict) -> bool:
    """Whether a ranked item is the injected error `target`: its label id, or for a deleted box a
    prediction in the same image with IoU >= 0.5 with it."""
    if kind != "missing":
        return item == target["label_id"]
    if item not in boxes_by_pred:
        return False
    image, box = boxes_by_pred[item]
    return image == target["image"] and iou_matrix([box], [target["box"]])[0, 0] >= 0.5


def count_found(kind: str, items: list[str], targets: list[dict], boxes_by_pred: dict) -> int:
    """How many `targets` the ranked `items` point at (each item used once)."""
    if kind != "missing":
        chosen = set(items)
        return sum(target["label_id"] in chosen for target in targets)
    found, used = 0, set()
    for target in targets:
        hit = next((item for item in items if item not in used and points_at(kind, item, target, boxes_by_pred)), None)
        if hit is not None:
            used.add(hit)
            found += 1
    return found


def score_needed_for_90(kind: str, findings, targets: list[dict], boxes_by_pred: dict) -> tuple[float, int]:
    """The score down to which cvtriage's ranking of `kind` must go to hold 90% of the injected
    errors, and how many other findings of that kind score at least that much. Above 2N - 0.9N of
    them, no ordering by these scores puts 90% in the top 2N: the model's evidence, not the order,
    is what falls short. An error whose evidence points to another kind scores 0 here."""
    scored = [(f.score, f.pred_id if kind == "missing" else f.label_id) for f in findings if f.kind == kind]
    target_scores, hits = [], set()
    for target in targets:
        matching = [(score, item) for score, item in scored if points_at(kind, item, target, boxes_by_pred)]
        target_scores.append(max((score for score, _ in matching), default=0.0))
        hits.update(item for _, item in matching)
    needed = sorted(target_scores, reverse=True)[int(np.ceil(TARGET_SHARE * len(targets))) - 1]
    return needed, sum(score >= needed for score, item in scored if item not in hits)


def share_found(kind: str, ranking: list[str], targets: list[dict], boxes_by_pred: dict) -> float:
    """Share of the N `targets` in the first 2N items of `ranking`."""
    return count_found(kind, ranking[: 2 * len(targets)], targets, boxes_by_pred) / len(targets)


def cvtriage_rankings(findings) -> dict[str, list[str]]:
    return {kind: [f.pred_id if kind == "missing" else f.label_id for f in findings if f.kind == kind] for kind in KINDS}


def fiftyone_rankings(view) -> dict[str, list[str]]:
    """FiftyOne Brain's own fields, with its fixed thresholds (0.95 confidence, IoU 0.5)."""
    with quiet_fiftyone():
        compute_fiftyone_mistakenness(view, missing_confidence=0.95, match_iou=0.5)
    gt = f"{GROUND_TRUTH}.detections"
    ids, mistakenness, loc, spurious = view.values([f"{gt}.id", f"{gt}.mistakenness", f"{gt}.mistakenness_loc",
                                                    f"{gt}.possible_spurious"], unwind=True)
    pred_ids, confidences, missing = view.values([f"{PREDICTIONS}.detections.id", f"{PREDICTIONS}.detections.confidence",
                                                  f"{PREDICTIONS}.detections.possible_missing"], unwind=True)

    def ranked(score_of):
        scored = [(score, label_id) for label_id, score in zip(ids, score_of) if score is not None]
        return [label_id for _, label_id in sorted(scored, key=lambda pair: -pair[0])]

    return {
        "class": ranked(mistakenness),
        "location": ranked(loc),
        "spurious": [label_id for label_id, flag in zip(ids, spurious) if flag],
        "missing": [pid for conf, pid in sorted(
            ((c, p) for p, c, flag in zip(pred_ids, confidences, missing) if flag), key=lambda pair: -pair[0])],
    }


def cleanlab_rankings(images, sizes: dict[str, tuple[int, int]], classes: list[str]) -> dict[str, list[str]]:
    """cleanlab ObjectLab's per-box scores on the same predictions (lower = more likely wrong)."""
    from cleanlab.object_detection import rank

    class_index = {name: index for index, name in enumerate(classes)}
    labels, predictions = [], []
    for image in images:
        width, height = sizes[image.sample_id]
        scale = np.array([width, height, width, height])
        labels.append({
            "bboxes": image.label_boxes * scale,
            "labels": np.array([class_index[c] for c in image.label_classes], dtype=int),
        })
        per_class = []
        for name in classes:
            keep = image.pred_classes == name
            per_class.append(np.column_stack([image.pred_boxes[keep] * scale, image.pred_confidences[keep]])
                             if keep.any() else np.zeros((0, 5)))
        predictions.append(np.array(per_class, dtype=object))
    swap = rank.compute_swap_box_scores(labels=labels, predictions=predictions)
    badloc = rank.compute_badloc_box_scores(labels=labels, predictions=predictions)
    overlooked = rank.compute_overlooked_box_scores(labels=labels, predictions=predictions)

    def ranked(scores, ids_of):
        scored = [(s, i) for image, image_scores in zip(images, scores) for s, i in zip(image_scores, ids_of(image))
                  if not np.isnan(s)]
        return [item for _, item in sorted(scored, key=lambda pair: pair[0])]

    def pred_ids_in_cleanlab_order(image):
        # cleanlab flattens predictions class by class.
        return [pid for name in classes for pid, c in zip(image.pred_ids, image.pred_classes) if c == name]

    return {
        "class": ranked(swap, lambda image: image.label_ids),
        "location": ranked(badloc, lambda image: image.label_ids),
        "missing": ranked(overlooked, pred_ids_in_cleanlab_order),
        "spurious": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=2, help="synthetic data seed (the demo model was trained on seeds 0 and 1)")
    parser.add_argument("--ground", choices=GROUNDS, default="plain",
                        help="synthetic ground: plain (what the demo model was trained on) or street (busy ground)")
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS))
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "runs" / "bench")
    parser.add_argument("--conf", type=float, default=None, help="prediction confidence floor (default: config/audit.yaml)")
    parser.add_argument("--reuse-predictions", action="store_true",
                        help="keep the last run's injected copy and predictions (to try ranking settings quickly)")
    args = parser.parse_args()
    if not Path(args.weights).is_file():
        raise SystemExit(f"{args.weights}: weights not found (train the demo model first, see weights/README.md)")

    clean = clean_dataset(args.work, args.images, args.imgsz, args.seed, args.ground)
    noisy = args.work / f"noisy-{args.images}-{args.imgsz}-seed{args.seed}-rate{args.rate}{ground_suffix(args.ground)}"
    import fiftyone as fo

    from cvtriage.database import connect_database

    connect_database()  # as the commands do: safe beside other processes starting the database
    name = f"cvtriage-bench-audit-quality-seed{args.seed}{ground_suffix(args.ground)}"
    if not args.reuse_predictions:
        shutil.rmtree(noisy, ignore_errors=True)
        inject_errors(clean, noisy, rate=args.rate, splits=("train", "val"), seed=args.seed)
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
    weights = None if args.reuse_predictions else str(args.weights)
    # The shipped settings (config/audit.yaml), with this run's model, dataset and folders.
    config = load_audit_config(
        weights=weights, dataset=name, imgsz=args.imgsz, conf=args.conf, out=str(args.work / "audit-report")
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    with AuditStageBars() as stages:  # the audit's progress, as the CLI draws it
        report = audit_labels(str(noisy / "data.yaml"), config, on_progress=stages)
    elapsed, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started

    dataset = fo.load_dataset(name)
    view = dataset.exists(PREDICTIONS)
    targets = injected_targets(noisy / MANIFEST_NAME, dataset)
    images = read_image_labels(view)
    boxes_by_pred = {pid: (image.image_path, box) for image in images for pid, box in zip(image.pred_ids, image.pred_boxes)}
    sizes = {sid: (w, h) for sid, w, h in zip(*view.values(["id", "metadata.width", "metadata.height"]))}
    rankings = {
        "cvtriage": cvtriage_rankings(report.findings),
        "FiftyOne mistakenness": fiftyone_rankings(view),
        "cleanlab ObjectLab": cleanlab_rankings(images, sizes, dataset.default_classes),
    }

    table = Table(title=f"Injected label errors found in the top 2N of each kind's ranking "
                        f"({args.images} images, {args.ground} ground, {args.rate:.0%} errors, {Path(args.weights).name})")
    table.add_column("kind")
    table.add_column("injected N", justify="right")
    for method in rankings:
        table.add_column(method, justify="right")
    for kind in KINDS:
        cells = []
        for method, by_kind in rankings.items():
            ranking = by_kind[kind]
            cells.append("n/a" if ranking is None else f"{share_found(kind, ranking, targets[kind], boxes_by_pred):.0%}")
        table.add_row(kind, str(len(targets[kind])), *cells)
    console.print(table)

    ceiling = Table(title="What 90% would take: the score cvtriage's ranking must reach to hold 90% of "
                          "each kind, and the findings that are not injected errors at or above it")
    for column in ("kind", "score holding 90%", "other findings at or above", "room in the top 2N"):
        ceiling.add_column(column, justify="left" if column == "kind" else "right")
    for kind in KINDS:
        needed, others = score_needed_for_90(kind, report.findings, targets[kind], boxes_by_pred)
        n = len(targets[kind])
        ceiling.add_row(kind, f"{needed:.3f}", str(others), str(2 * n - int(np.ceil(TARGET_SHARE * n))))
    console.print(ceiling)

    flags = Table(title="What audit-labels flags: each kind's threshold (config/audit.yaml's rule), the findings at or "
                        "above it, and how many of them are injected errors (a reviewer's time is the cost)")
    for column in ("kind", "threshold", "flagged", "injected errors among them", "precision", "of the injected"):
        flags.add_column(column, justify="left" if column == "kind" else "right")
    for kind in KINDS:
        flagged = [f.pred_id if kind == "missing" else f.label_id for f in report.flagged if f.kind == kind]
        hits = count_found(kind, flagged, targets[kind], boxes_by_pred)
        threshold = report.thresholds[kind]
        flags.add_row(kind, "none" if np.isinf(threshold) else f"{threshold:.3f}", str(len(flagged)), str(hits),
                      f"{hits / len(flagged):.0%}" if flagged else "-", f"{hits / len(targets[kind]):.0%}")
    console.print(flags)

    # Kind-blind: the whole cvtriage ranking (the likely-mislabeled view), top 2 x all injected.
    total = sum(len(t) for t in targets.values())
    top = [f.pred_id if f.kind == "missing" else f.label_id for f in report.findings][: 2 * total]
    found_overall = sum(count_found(kind, top, targets[kind], boxes_by_pred) for kind in KINDS)
    console.print(f"cvtriage, all kinds together: {found_overall}/{total} injected errors in the top {2 * total} "
                  f"of the whole ranking; {len(report.flagged)} findings flagged")
    if args.reuse_predictions:
        console.print("(predictions reused from the last run: the time below leaves out prediction)")
    console.print(f"End-to-end audit of {report.audited_samples} images at {args.imgsz} px with {Path(args.weights).name} "
                  f"on CPU ({os.cpu_count()} cores): {elapsed:.1f} s wall (target <= 180 s), {cpu_seconds:.1f} s of CPU "
                  f"time (load average now {os.getloadavg()[0]:.1f}); by stage (s): "
                  + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in report.stage_seconds.items()))


if __name__ == "__main__":
    main()

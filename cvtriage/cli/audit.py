"""`cvtriage audit-labels` (and `inject-errors`, which plants known errors to measure it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cvtriage.cli.app import ProgressBar, app, console, print_warning, user_errors

if TYPE_CHECKING:
    from cvtriage.audit.findings import AuditReport


@app.command("inject-errors", rich_help_panel="Data")
@user_errors
def inject_errors_command(
    data: Path = typer.Argument(..., help="YOLO data.yaml, or a dataset folder holding one."),
    out: Path = typer.Argument(..., help="New folder for the corrupted copy (data.yaml, images/, labels/, manifest.json)."),
    rate: float = typer.Option(0.05, help="Fraction of the boxes in --splits to corrupt, split evenly across --kinds."),
    kinds: str = typer.Option("class,missing,spurious,location", help="Kinds of error, comma-separated."),
    splits: str = typer.Option("train", help="Splits to corrupt, comma-separated (the others are copied as they are)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same errors."),
) -> None:
    """Copy a YOLO dataset with known label errors, to measure what audit-labels catches."""
    from rich.table import Table

    from cvtriage.audit.inject import inject_errors

    with ProgressBar("Copying dataset") as progress:
        result = inject_errors(
            data, out, rate=rate, seed=seed,
            kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
            splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
            on_progress=progress,
        )
    table = Table(title=f"Injected {len(result.errors)} label errors into {result.boxes_in_scope} boxes")
    table.add_column("kind")
    table.add_column("errors", justify="right")
    for kind, count in result.counts().items():
        table.add_row(kind, str(count))
    console.print(table)
    console.print(f"Dataset: {result.data_yaml}", soft_wrap=True, highlight=False)
    console.print(f"Manifest: {result.manifest_path}", soft_wrap=True, highlight=False)


@app.command("audit-labels", rich_help_panel="Review")
@user_errors
def audit_labels_command(
    data: str = typer.Argument(..., help="YOLO data.yaml or dataset folder, a COCO JSON, or a FiftyOne dataset name."),
    weights: Optional[str] = typer.Option(None, help="Detector trained on the dataset's classes, or demo (default: reuse its predictions)."),
    dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset to load into (default cvtriage-<dataset folder>)."),
    images: Optional[Path] = typer.Option(None, help="COCO only: the images folder (default: images/ next to the JSON)."),
    split: Optional[str] = typer.Option(None, help="Split to audit: train, val, test or all."),
    top: Optional[int] = typer.Option(None, help="Keep only the K highest-ranked findings."),
    out: Optional[Path] = typer.Option(None, help="Folder for audit.csv and audit.json (default runs/audit/<dataset>)."),
    conf: Optional[float] = typer.Option(None, help="Lowest prediction confidence kept (low, so the ranking sees doubts)."),
    iou: Optional[float] = typer.Option(None, help="NMS IoU of the predictions."),
    imgsz: Optional[int] = typer.Option(None, help="Inference size in pixels."),
    batch: Optional[str] = typer.Option(None, help="Images per model call, or auto (1 on the CPU, 16 on CUDA)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, or a CUDA index such as 0."),
    evaluate_conf: Optional[float] = typer.Option(None, help="Lowest confidence in FiftyOne's evaluation and mistakenness."),
    match_iou: Optional[float] = typer.Option(None, help="IoU at which a prediction and a label are the same object."),
    location_min_iou: Optional[float] = typer.Option(None, help="Lowest IoU at which a same-class prediction shows a badly placed box."),
    missing_confidence: Optional[float] = typer.Option(None, help="FiftyOne Brain's possible_missing confidence (its default 0.95)."),
    min_score: Optional[float] = typer.Option(
        None, help="Flag findings scoring at least this, every kind (default: each kind's threshold by the precision rule)."
    ),
    class_map: Optional[list[str]] = typer.Option(
        None, "--map", help="LABEL_CLASS=MODEL_CLASS: a label class the model knows by another name (repeatable)."
    ),
    ignore_border: Optional[bool] = typer.Option(
        None, "--ignore-border", help="Do not flag missing boxes touching the image border (objects cut off by the frame)."
    ),
    strict: Optional[bool] = typer.Option(
        None, "--strict", help="Stop on images that are listed but absent or unreadable (default: audit the rest)."
    ),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding config/audit.yaml."),
) -> None:
    """Rank labels by how likely they are wrong (class, missing, spurious, location); tag them in FiftyOne."""
    from cvtriage.audit.pipeline import audit_labels
    from cvtriage.config import load_audit_config
    from cvtriage.database import connect_database

    connect_database()

    settings = load_audit_config(
        config, weights=weights, dataset=dataset, split=split, top=top, out=None if out is None else str(out),
        conf=conf, iou=iou, imgsz=imgsz, batch=batch, device=device, evaluate_conf=evaluate_conf, match_iou=match_iou,
        location_min_iou=location_min_iou, missing_confidence=missing_confidence, min_score=min_score,
        class_map=class_map or None, ignore_border=ignore_border, strict=strict,
    )
    with AuditStageBars() as stages:
        report = audit_labels(data, settings, images_dir=images, on_progress=stages)
    for problem in report.problems[:20]:
        print_warning(f"{problem} (left out)")
    if report.problems:
        print_warning(f"{len(report.problems)} image(s) left out, {report.audited_samples} audited (--strict stops instead)")
    for table in audit_findings_tables(report):
        console.print(table)
    if settings.min_score is None:
        console.print(f"Each kind is flagged from the lowest score at which errors planted in these labels (as if "
                      f"{settings.assumed_error_rate:.0%} were wrong) are at least {settings.flag_precision:.0%} of the "
                      "findings scoring as much; 'none': no score gets there with this model.", soft_wrap=True)
    for line in finding_group_lines(report):
        console.print(line, soft_wrap=True, highlight=False)
    if report.labels_seen is not None:
        console.print(f"The model sees {report.labels_seen:.0%} of the labelled objects; a label it misses counts as "
                      "spurious only as far as it sees labels of that class and size elsewhere, and as its box looks like the "
                      "ground around it.", soft_wrap=True)
        if report.labels_seen < 0.1:
            print_warning("the model sees almost none of the labels: this audit says little; "
                          "pass --weights trained on these classes (see cvtriage train)")
    console.print(f"FiftyOne dataset: {report.dataset_name} (saved views likely-mislabeled, audit-<kind>"
                  f"{', and one per group' if report.groups else ''})", soft_wrap=True)
    console.print(f"Report: {report.out_dir / 'audit.csv'}, audit.json, audit_scores.png", soft_wrap=True, highlight=False)


class AuditStageBars(ProgressBar):
    """The audit's progress display: a spinner for each stage while it runs, named by the detail
    audit_labels reports, and a bar for a stage that counts its work (prediction), left in place."""

    def __init__(self):
        super().__init__("")
        self.stage: str | None = None
        self.task = None
        self.counted = False

    def __call__(self, done: int, total: int | None, detail: str = "") -> None:
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console, transient=True,
            )
            self.progress.start()
        if detail != self.stage:
            if self.task is not None and not self.counted:
                self.progress.update(self.task, visible=False)
            self.stage, self.task, self.counted = detail, self.progress.add_task(detail, total=total), total is not None
        self.progress.update(self.task, completed=done, total=total)


def audit_findings_tables(report: AuditReport, top: int = 10):
    """Flagged findings per kind (with each kind's threshold and saved view), and the top findings."""
    import numpy as np
    from rich.table import Table

    from cvtriage.audit.findings import LIKELY_MISLABELED, kind_view_name
    from cvtriage.audit.reports import report_rows

    counts = Table(title=f"Likely label errors in {report.dataset_name} ({report.audited_samples} images)")
    counts.add_column("kind")
    counts.add_column("flagged", justify="right")
    counts.add_column("from score", justify="right")
    counts.add_column("saved view")
    for kind, count in report.counts().items():
        threshold = report.thresholds.get(kind, float("inf"))
        counts.add_row(kind, str(count), "none" if np.isinf(threshold) else f"{threshold:.3f}", kind_view_name(kind))
    counts.add_row("all", str(len(report.flagged)), "", LIKELY_MISLABELED, style="bold")

    best = Table(title=f"Top {min(top, len(report.flagged))}")
    for column in ("rank", "kind", "score", "image", "line", "label", "prediction"):
        best.add_column(column, justify="right" if column in ("rank", "score", "line") else "left")
    for row in report_rows(report.flagged[:top]):
        prediction = f"{row['pred_class']} {row['pred_confidence']:.2f}" if row["pred_class"] else ""
        line = "" if row["label_index"] is None else str(row["label_index"] + 1)
        best.add_row(
            str(row["rank"]), row["kind"], f"{row['score']:.3f}", Path(row["image_path"]).name, line,
            row["label_class"] or "", prediction,
        )
    return counts, best


def finding_group_lines(report: AuditReport) -> list[str]:
    """One line per named group of findings, and what --ignore-border left out."""
    lines = []
    for group in report.groups:
        line = (f"{group.kind}: {group.count} of the {group.of_kind} findings scoring >= {group.floor:.2f} "
                f"{group.description} ({group.label_share:.0%} of the labels do): saved view {group.view}")
        if group.kind == "missing" and group.cause == "border":
            line += "; if your labels leave out objects cut off by the frame on purpose, --ignore-border leaves these out"
        lines.append(line)
    if report.border_ignored:
        lines.append(f"missing: {report.border_ignored} findings touching the image border left out (ignore_border)")
    return lines

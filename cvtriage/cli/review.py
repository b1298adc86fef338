"""The review loop's commands: the App, harvest, compare, export-labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Group
from rich.table import Table

from cvtriage.cli.app import ProgressBar, app, console, print_warning, user_errors

if TYPE_CHECKING:
    from cvtriage.review.compare import Comparison


@app.command("compare", rich_help_panel="Triage footage")
@user_errors
def compare_command(
    run_a: Path = typer.Argument(..., help="A scan results folder (<scan out>/<video-stem>/), e.g. before fine-tuning."),
    run_b: Path = typer.Argument(..., help="A scan results folder of the same video, e.g. after fine-tuning."),
    out: Optional[Path] = typer.Option(
        None, help="Folder for compare.csv/json/png (default runs/compare/<video-stem>-<A's scan folder>-vs-<B's>)."
    ),
    min_iou: float = typer.Option(0.3, min=0.0, max=1.0, help="IoU at which an event of A and one of B are the same object."),
) -> None:
    """Compare two scans of one video: events matched, changed class, lost, gained."""
    from cvtriage.review.compare import compare_scans

    comparison = compare_scans(run_a, run_b, out=out, min_iou=min_iou)
    for table in comparison_tables(comparison):
        console.print(table)
    outputs = comparison.outputs
    console.print(f"Results: {outputs['out_dir']} ({outputs['csv'].name}, {outputs['json'].name}, {outputs['png'].name})",
                  soft_wrap=True, highlight=False)


@app.command("app", rich_help_panel="Review")
@user_errors
def app_command(
    dataset: Optional[str] = typer.Argument(None, help="FiftyOne dataset (default: the most recently modified cvtriage dataset)."),
    port: int = typer.Option(5151, help="Port to serve the App on."),
    address: str = typer.Option("127.0.0.1", help="Address to serve on. Anything but loopback exposes the data to the network."),
    view: Optional[str] = typer.Option(None, help="Saved view to open, e.g. likely-mislabeled or flagged-events."),
) -> None:
    """Open a dataset (scan events or audited labels) in the FiftyOne App; serve until Ctrl-C."""
    from cvtriage.database import connect_database
    from cvtriage.review.app import (
        is_loopback,
        launch_review_app,
        load_review_dataset,
        serve_until_interrupted,
    )

    connect_database()

    if not is_loopback(address):
        print_warning(f"serving on {address}: anyone who can reach this machine on port {port} "
                      "can see and edit the dataset (the App has no login)")  # fmt: skip
    fo_dataset = load_review_dataset(dataset)
    running = launch_review_app(
        fo_dataset, port=port, address=address, view_name=view,
        on_start=lambda: console.print(f"Starting the FiftyOne App on {fo_dataset.name} ...", highlight=False),
    )  # fmt: skip
    views = ", ".join(running.saved_views) or "none"
    console.print(
        f"Dataset {running.dataset_name}: {running.sample_count} sample{'' if running.sample_count == 1 else 's'}; saved views: {views}"
        + (f" (opened {running.view_name})" if running.view_name else ""), soft_wrap=True, highlight=False,
    )
    if is_loopback(address):
        console.print(f"From another machine: ssh -N -L {port}:127.0.0.1:{port} USER@THIS-HOST, then open http://localhost:{port}",
                      soft_wrap=True, highlight=False)
    elif address in ("0.0.0.0", "::"):
        import socket

        console.print(f"From another machine: http://{socket.gethostname()}:{port}/", soft_wrap=True, highlight=False)
    console.print("Press Ctrl-C to stop.")
    typer.echo(running.url)  # on stdout, for scripts
    serve_until_interrupted(running)
    console.print("App stopped.")


@app.command("export-labels", rich_help_panel="Review")
@user_errors
def export_labels_command(
    dataset: str = typer.Argument(..., help="FiftyOne dataset holding the reviewed labels."),
    out: Path = typer.Argument(..., help="Folder for the YOLO dataset (data.yaml, images/<split>, labels/<split>)."),
    label_field: str = typer.Option("ground_truth", help="Detections field to export."),
    splits: Optional[str] = typer.Option(None, help="Splits to export, comma-separated (default: every train/val/test tag present)."),
    skip_tag: list[str] = typer.Option(["reject"], help="Leave out samples and labels carrying this tag (repeatable)."),
    no_skip: bool = typer.Option(False, "--no-skip", help="Export every sample and label, whatever its tags."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it holds an earlier export (never another folder or file)."),
) -> None:
    """Write reviewed labels back as a YOLO dataset: same class ids and order, same splits."""
    from rich.table import Table

    from cvtriage.database import connect_database
    from cvtriage.review.app import load_review_dataset
    from cvtriage.review.export import export_reviewed_labels

    connect_database()

    fo_dataset = load_review_dataset(dataset)
    with ProgressBar("Exporting images") as progress:
        result = export_reviewed_labels(
            fo_dataset, out, label_field=label_field,
            splits=[s.strip() for s in splits.split(",") if s.strip()] if splits else None,
            skip_tags=() if no_skip else tuple(skip_tag), overwrite=overwrite, on_progress=progress,
        )
    table = Table(title=f"{dataset} -> YOLO ({len(result.names)} classes)")
    for column in ("split", "images", "boxes", "samples left out", "labels left out"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in result.splits:
        table.add_row(split.split, str(split.images), str(split.boxes), str(split.skipped_samples), str(split.skipped_labels))
    console.print(table)
    if result.untagged_samples:
        print_warning(f"{result.untagged_samples} samples have no train/val/test tag (not exported)")
    console.print(f"Dataset: {result.yaml_path}", soft_wrap=True, highlight=False)


@app.command("harvest", rich_help_panel="Review")
@user_errors
def harvest_command(
    dataset: str = typer.Argument(..., help="The scan's FiftyOne dataset, its events tagged confirmed, not-object or class:<name>."),
    out: Path = typer.Argument(..., help="New folder for the YOLO dataset (data.yaml, images/, labels/, manifest.json)."),
    merge: Optional[Path] = typer.Option(None, help="Existing YOLO dataset to add the harvest to (its class order is kept)."),
    decisions: Optional[Path] = typer.Option(None, help="CSV of decisions: event_id,decision,class[,video] (with or instead of App tags)."),
    new_class: list[str] = typer.Option([], help="A class name that may look like a typo of a known one but is new (repeatable)."),
    ignore_tag: list[str] = typer.Option([], help="A tag that is not a decision, to leave alone (repeatable)."),
    split_by: Optional[str] = typer.Option(None, help="Keep together on one side of train/val: auto, event or video."),
    val_fraction: Optional[float] = typer.Option(None, help="Share of the harvested frames for val."),
    classes: Optional[str] = typer.Option(None, help="Class list without --merge: model (its classes, then new) or decided."),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding config/harvest.yaml."),
) -> None:
    """Turn reviewers' decisions on scan events into a YOLO dataset: every view of each decided event."""
    from cvtriage.config import load_harvest_config
    from cvtriage.database import connect_database
    from cvtriage.review.harvest import harvest

    connect_database()

    settings = load_harvest_config(
        config, split_by=split_by, val_fraction=val_fraction, classes=classes,
        new_classes=new_class or None, ignore_tags=ignore_tag or None,
    )  # fmt: skip
    with ProgressBar("Decoding frames") as progress:
        result = harvest(dataset, out, settings, decisions_csv=decisions, merge=merge, on_progress=progress)
    console.print(harvest_table(result))
    console.print(f"Dataset: {result.data_yaml}", soft_wrap=True, highlight=False)
    console.print(f"Manifest: {result.out / 'manifest.json'}", soft_wrap=True, highlight=False)
    console.print(f"Next: cvtriage train {result.data_yaml} --weights <the scan's weights>", soft_wrap=True, highlight=False)


def comparison_tables(comparison: Comparison, top: int = 20) -> list:
    """The two scans, the counts, then the events that differ (lost, gained, class changed), the
    first `top` in time."""
    from rich.table import Table

    from cvtriage.review.compare import model_name

    a, b = comparison.a, comparison.b
    runs = Table.grid(padding=(0, 2))
    for label, run in (("A", a), ("B", b)):
        runs.add_row(label, model_name(run), str(run.folder))
    summary = Table(title=f"{a.video['name']}: A vs B", title_justify="left")
    summary.add_column("")
    summary.add_column("events", justify="right")
    for status, count in comparison.counts.items():
        summary.add_row(status, str(count))
    summary.add_section()
    summary.add_row("events in A", str(len(a.events)))
    summary.add_row("events in B", str(len(b.events)))
    differing = [row for row in comparison.rows if row["status"] != "matched"]
    title = "Differences" + (f" (the first {top} of {len(differing)})" if len(differing) > top else "")
    changes = Table(title=title, title_justify="left")
    for column in ("status", "A", "B", "time (s)", "peak A / B"):
        changes.add_column(column, justify="right" if column in ("time (s)", "peak A / B") else "left")
    for row in differing[:top]:
        first = min(t for t in (row["a_first_s"], row["b_first_s"]) if t is not None)
        last = max(t for t in (row["a_last_s"], row["b_last_s"]) if t is not None)
        changes.add_row(
            row["status"], _event_cell(row, "a"), _event_cell(row, "b"), f"{first:.2f}-{last:.2f}",
            " / ".join("-" if row[f"{side}_peak"] is None else f"{row[f'{side}_peak']:.2f}" for side in "ab"),
        )
    if not differing:
        changes.add_row("[dim](none)[/]", "", "", "", "")
    return [runs, summary, changes]


def _event_cell(row: dict[str, Any], side: str) -> str:
    return "-" if row[f"{side}_id"] is None else f"#{row[f'{side}_id']} {row[f'{side}_class']}"


def harvest_table(result):
    """Decisions in, labelled frames out (per split and class), and what was left out and why."""
    decided = sum(result.decisions.values())
    table = Table(title=f"Harvested {len(result.frames)} frames from {decided} decisions", title_justify="left")
    splits = ["train", "val"]
    table.add_column("")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_row("frames", *(str(result.images(split)) for split in splits))
    for name in result.names:
        counts = [result.boxes(split)[name] for split in splits]
        if any(counts):
            table.add_row(f"boxes: {name}" + (" (new)" if name in result.new_classes else ""), *map(str, counts))
    table.add_row("hard negatives (no box)", *(str(result.negatives(split)) for split in splits))
    if result.merged_from is not None:
        table.add_row(f"copied from {result.merged_from.name}", *(str(result.merged_images[split]) for split in splits))
    figures = Table.grid(padding=(0, 2))
    verdicts = ", ".join(f"{count} {verdict}" for verdict, count in sorted(result.decisions.items()))
    figures.add_row("decisions", verdicts)
    figures.add_row("boxes per decision", f"{sum(result.boxes().values()) / max(decided, 1):.1f}")
    for reason, count in sorted(result.left_out.items()):
        if count:
            figures.add_row("left out", f"{count} frames: {reason}")
    figures.add_row("classes", ", ".join(result.names))
    if not result.images("val"):
        figures.add_row("val", "no harvested frames (one stretch of video, see split_seconds): "
                        + ("the merge target's val remains" if result.merged_from else "train needs --merge or more footage"))
    return Group(table, figures)

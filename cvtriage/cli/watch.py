"""`cvtriage watch`: a folder of arriving image + sidecar pairs, processed exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cvtriage.cli.app import NO_EXPORT_HELP, app, console, user_errors

if TYPE_CHECKING:
    from cvtriage.ingest.watch import WatchSummary


@app.command("watch", rich_help_panel="Triage footage")
@user_errors
def watch_command(
    folder: Path = typer.Argument(..., help="Folder receiving NAME.<image> + NAME.json pairs, in any order."),
    once: bool = typer.Option(False, "--once", help="Process what is there, then exit (for cron)."),
    out: Optional[Path] = typer.Option(None, help="Results and state: ledger, pairs.csv, quarantine/ (default runs/watch)."),
    pair_timeout: Optional[str] = typer.Option(None, help="Report a half whose partner has not come after this long: 90s, 10m, 2h."),
    dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset receiving one sample per pair (default cvtriage-watch)."),
    no_dataset: bool = typer.Option(False, "--no-dataset", help="Do not store the pairs in FiftyOne."),
    weights: Optional[str] = typer.Option(None, help="Model, as for scan (default: config/scan.yaml's)."),
    classes: Optional[str] = typer.Option(None, help='Class names to keep, comma-separated.'),
    conf: Optional[float] = typer.Option(None, help="Minimum detection confidence."),
    imgsz: Optional[int] = typer.Option(None, help="Model input size in pixels."),
    tile: Optional[str] = typer.Option(None, help="Tiling for small objects: auto, off, or RxC such as 2x3."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, or a CUDA index such as 0."),
    no_export: bool = typer.Option(False, "--no-export", help=NO_EXPORT_HELP),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding config/watch.yaml."),
) -> None:
    """Watch a folder for image + JSON sidecar pairs; process each pair exactly once."""
    from cvtriage.config import load_ingest_config, load_scan_config
    from cvtriage.database import connect_database
    from cvtriage.ingest.watch import watch_folder

    settings = load_ingest_config(
        config, out=None if out is None else str(out), pair_timeout=pair_timeout, dataset=dataset
    )
    if no_dataset:
        settings.dataset = None
    scan = load_scan_config(
        weights=weights, classes=classes, conf=conf, imgsz=imgsz, tile=tile, device=device,
        export="off" if no_export else None,
    )  # fmt: skip
    if settings.dataset is not None:
        connect_database()
    summary = watch_folder(folder, scan, settings, once=once)
    console.print(watch_summary_table(summary, Path(settings.out).resolve()))
    if settings.dataset is not None:
        console.print(f"FiftyOne dataset: {settings.dataset}")


def watch_summary_table(summary: WatchSummary, out: Path):
    """This run's work and the ledger's totals over every run."""
    from rich.table import Table

    totals = summary.totals
    table = Table(title=f"Watch results in {out}", title_justify="left")
    table.add_column("")
    table.add_column("this run", justify="right")
    table.add_column("all runs", justify="right")
    table.add_row("pairs processed", str(summary.processed), str(totals.get("processed", 0)))
    table.add_row("  with detections (flagged)", str(summary.flagged), "")
    table.add_row("files quarantined", str(summary.quarantined_files), str(totals.get("quarantined_files", 0)))
    table.add_row("lone halves reported", str(summary.lone_reported), "")
    table.add_row("pairs waiting for a half", "", str(totals.get("waiting", 0)))
    table.add_row("halves re-delivered after processing (ignored)", str(summary.redelivered), str(totals.get("redelivered", 0)))
    if summary.csv_rows_recovered:
        table.add_row("pairs.csv rows restored after a kill", str(summary.csv_rows_recovered), "")
    rate = summary.processed / summary.elapsed_s if summary.elapsed_s else 0.0
    table.add_row("wall time", f"{summary.elapsed_s:.1f} s ({rate:.1f} pairs/s)", "")
    return table

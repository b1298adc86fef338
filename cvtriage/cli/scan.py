"""`cvtriage scan`: one video, or many (here or on Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cvtriage.cli.app import NO_EXPORT_HELP, ProgressBar, app, console, user_errors

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from cvtriage.batch.types import BatchReport
    from cvtriage.scan.engine import ScanResult


@app.command("scan", rich_help_panel="Triage footage")
@user_errors
def scan_command(
    sources: list[str] = typer.Argument(
        ..., metavar="SOURCE...",
        help="Videos, folders (every video under them; a folder of only images is one source, read in name order), "
        "globs in quotes ('flights/*.MP4'), or .txt files listing paths one a line.",
    ),
    weights: Optional[str] = typer.Option(
        None, help="Model: .pt, .onnx, OpenVINO folder, .yaml, or demo (the demo model shipped with cvtriage; default yolo11n.pt)."
    ),
    classes: Optional[str] = typer.Option(None, help='Class names to keep, comma-separated, e.g. "ladder,fire extinguisher".'),
    conf: Optional[float] = typer.Option(None, help="Minimum detection confidence."),
    every: Optional[int] = typer.Option(None, help="Sample every N-th frame (instead of --fps)."),
    fps: Optional[float] = typer.Option(None, help="Sample this many frames per second of video (default 2)."),
    imgsz: Optional[int] = typer.Option(None, help="Model input size in pixels."),
    tile: Optional[str] = typer.Option(None, help="Tiling for small objects: auto, off, or RxC such as 2x3."),
    batch: Optional[str] = typer.Option(None, help="Sampled frames per model call, or auto (1 on the CPU, 8 on CUDA, 32 in a dense scan)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, or a CUDA index such as 0."),
    strategy: Optional[str] = typer.Option(
        None, metavar="auto|dense|refine",
        help="dense: every frame (or every k-th, k so the model keeps up with decoding) in large batches; "
        "refine: sampled frames, refined around changes; auto (default): dense on CUDA, refine on the CPU.",
    ),
    no_export: bool = typer.Option(False, "--no-export", help=NO_EXPORT_HELP),
    out: Optional[Path] = typer.Option(None, help="Parent folder of the results (default runs/scan): <out>/<source-stem>/."),
    dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset receiving the event keyframes (default cvtriage-scan)."),
    no_dataset: bool = typer.Option(False, "--no-dataset", help="Do not store the events in FiftyOne."),
    replace_decisions: bool = typer.Option(
        False, "--replace-decisions", help="Re-scan a video even though reviewers have decided on its events (their tags go)."
    ),
    propose: bool = typer.Option(
        False, "--propose",
        help="Cold start: propose objects of any class (the model's boxes at a low confidence, motion, contrast with "
        "the ground) as `object` events, for reviewers to name (class:<name>). Settings: config/scan.yaml's proposals.",
    ),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding config/scan.yaml."),
    camera: Optional[str] = typer.Option(
        None, help="The drone's camera, for ground positions when its flight log has no focal_len: a DJI model such as 'Mavic 3' or 'Phantom 4 RTK'."
    ),
    ray: Optional[str] = typer.Option(
        None, metavar="auto|ADDRESS",
        help="Scan one video per Ray task: auto (a local runtime, or the cluster of a Ray job) or ray://HOST:10001. "
        "Per-task CPUs/GPUs and retries: config/batch.yaml, or --batch-config.",
    ),
    batch_config: Optional[Path] = typer.Option(
        None, help="Settings file overriding config/batch.yaml (a batch's or --ray's CPUs/GPUs per video, retries)."
    ),
) -> None:
    """Scan drone videos for moments worth a look: events with times, keyframes and a timeline."""
    from rich.markup import escape

    from cvtriage.batch.sources import expand_sources
    from cvtriage.config import load_batch_config, load_scan_config
    from cvtriage.scan.pipeline import run_scan

    batch_settings = load_batch_config(batch_config)  # a bad file fails now, not after the first video
    settings = load_scan_config(
        config,
        weights=weights, classes=classes, conf=conf, every=every, fps=fps, imgsz=imgsz, tile=tile, batch=batch,
        device=device, strategy=strategy, out=None if out is None else str(out), dataset=dataset,
        replace_decisions=replace_decisions or None, export="off" if no_export else None, propose=propose or None,
    )  # fmt: skip
    if no_dataset:
        settings.dataset = None
    if camera is not None:
        settings.positions.camera = camera
    if settings.positions.camera:
        from cvtriage.telemetry.camera import camera_named

        camera_named(settings.positions.camera)  # an unknown camera fails now, not after a batch's scans
    expanded = expand_sources(sources)
    if not expanded.single or ray is not None:
        _scan_batch(expanded, settings, ray, batch_settings)
        return
    if settings.dataset is not None:
        from cvtriage.database import connect_database

        connect_database()  # an unreachable shared database fails now, not after the scan
    source = expanded.paths[0]
    with ProgressBar(f"[bold]scan[/] {escape(source.name)}", transient=False) as bar:
        result = run_scan(source, settings, on_progress=_counted(bar, "frames"))
    console.print(scan_summary_table(result))
    console.print(f"Results: {result.outputs.get('out_dir', result.out_dir)}")
    if settings.dataset is not None:
        console.print(f"FiftyOne dataset: {settings.dataset}")


def _scan_batch(sources, settings, ray_address: str | None, batch_settings) -> None:
    from cvtriage.batch.runner import run_batch
    from cvtriage.batch.summary import failure_lines

    with ProgressBar("[bold]scan batch[/]", transient=False, time_remaining=False) as bar:
        report = run_batch(sources, settings, ray_address=ray_address, batch=batch_settings, on_progress=_counted(bar, "videos"))
    console.print(batch_summary_table(report))
    for line in failure_lines(report):
        console.print(f"cvtriage: {line}", style="red", soft_wrap=True, markup=False, highlight=False)
    console.print(f"Results: {Path(settings.out).resolve()}/<video>/ and {report.batch_json}", soft_wrap=True, highlight=False)
    if settings.dataset is not None:
        console.print(f"FiftyOne dataset: {settings.dataset}")
    if report.failed:
        raise typer.Exit(1)


def _counted(bar: ProgressBar, unit: str):
    """The bar's callback, naming what it counts before the stage's detail ("frames  52 fps ...")."""
    return lambda done, total, detail="": bar(done, total, f"{unit}  {detail}")


def scan_summary_table(result: "ScanResult") -> "Group":
    """A scan's events per class, then frames inferred versus total and the wall time."""
    from rich.console import Group
    from rich.table import Table

    stats = result.stats
    by_class: dict[str, list] = {}
    for event in result.events:
        by_class.setdefault(event.class_name, []).append(event)
    events = Table(title=f"Events in {result.video.path.name}", title_justify="left")
    for column in ("class", "events", "first seen", "peak conf"):
        events.add_column(column, justify="left" if column == "class" else "right")
    for name, found in sorted(by_class.items(), key=lambda item: (-len(item[1]), item[0])):
        first = min(e.first_time_s for e in found)
        events.add_row(name, str(len(found)), f"{first:.2f} s", f"{max(e.peak_confidence for e in found):.2f}")
    if not by_class:
        events.add_row("[dim](none)[/]", "0", "", "")
    total, inferred = stats["frames_total"], stats["frames_inferred"]
    figures = Table.grid(padding=(0, 2))
    figures.add_row("frames inferred", f"{inferred} of {total} ({inferred / max(total, 1):.1%})")
    figures.add_row("sampling", f"{sampling_text(stats)}; input {stats['imgsz']} px, tiles {stats['tiles']}")
    if stats["frames_resumed"]:
        figures.add_row("resumed", f"{stats['frames_resumed']} frames from the interrupted run")
    backend = ", OpenVINO export" if stats.get("export") else ""
    figures.add_row("wall time", f"{stats['wall_time_s']:.1f} s on {stats['device']}{backend}")
    return Group(events, figures)


def sampling_text(stats: dict) -> str:
    """Which frames the scan inferred, and why: refine's sampling, or a dense scan's k."""
    step = stats["sample_step"]
    if stats.get("strategy") != "dense":
        return f"1 frame in {step}, refined around changes"
    frames = "every frame" if step == 1 else f"1 frame in {step}"
    rates = stats.get("dense_rates")
    why = f" (k = {step}: decoding {rates['decode_fps']:.0f} frames/s, model {rates['model_fps']:.0f})" if rates else ""
    return f"dense, {frames}{why}, batches of {stats['batch']}"


def batch_summary_table(report: "BatchReport") -> "Table":
    """A batch's videos, one row each: status, events, frames inferred, wall time."""
    from rich.table import Table

    failed = len(report.failed)
    title = f"Batch of {len(report.outcomes)} sources: {len(report.outcomes) - failed} done, {failed} failed"
    table = Table(title=title, title_justify="left", caption=f"{report.wall_time_s:.1f} s on {report.runner}",
                  caption_justify="left")  # fmt: skip
    for column in ("video", "status", "events", "frames inferred", "wall time"):
        table.add_column(column, justify="left" if column in ("video", "status") else "right")
    for outcome in report.outcomes:
        status = f"[red]{outcome.status}[/]" if outcome.failed else outcome.status
        inferred = f"{outcome.frames_inferred} of {outcome.frames_total}" if outcome.frames_total is not None else ""
        wall = f"{outcome.wall_time_s:.1f} s" if outcome.wall_time_s is not None else ""
        events = str(outcome.events) if outcome.events is not None else ""
        table.add_row(outcome.source.name, status, events, inferred, wall)
    return table


@app.command("store", rich_help_panel="Triage footage")
@user_errors
def store_command(
    folders: list[Path] = typer.Argument(..., metavar="RESULTS_FOLDER...", help="Scan results folders (<out>/<video-stem>)."),
    dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset receiving the events (default cvtriage-scan)."),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding config/scan.yaml (for its dataset)."),
) -> None:
    """Store scan results already written in FiftyOne: a scan whose database was down, unreachable or busy."""
    from cvtriage.config import load_scan_config
    from cvtriage.database import connect_database
    from cvtriage.scan.pipeline import store_results_folder

    name = load_scan_config(config, dataset=dataset).dataset or "cvtriage-scan"
    connect_database()
    for folder in folders:
        stored = store_results_folder(folder, name)
        console.print(f"Stored {stored} events of {folder} in FiftyOne dataset {name}", highlight=False)

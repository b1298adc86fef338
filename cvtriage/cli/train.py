"""`cvtriage train`: fine-tune a detector on a YOLO dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from cvtriage.cli.app import app, console, user_errors
from cvtriage.errors import CvtriageError

if TYPE_CHECKING:
    from cvtriage.labels.yolo import DataProblem

# Problems listed in full; the rest are counted (a broken dataset can have thousands).
PROBLEMS_SHOWN = 10


@app.command("train", rich_help_panel="Train")
@user_errors
def train_command(
    data: Path = typer.Argument(..., help="YOLO data.yaml, or a dataset folder holding one."),
    weights: Optional[str] = typer.Option(
        None, help="Start weights: .pt to fine-tune (demo: the demo model shipped with cvtriage); yolo11n.yaml trains from scratch."
    ),
    epochs: Optional[int] = typer.Option(None, help="Passes over the training images."),
    imgsz: Optional[int] = typer.Option(None, help="Training image size in pixels."),
    batch: Optional[str] = typer.Option(
        None, help="Images per batch; auto (16-64 on a GPU by the training set's size, 16 on the CPU); "
        "or a share of GPU memory below 1, such as 0.6, for Ultralytics' AutoBatch.",
    ),
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
    workers: Optional[int] = typer.Option(None, help="CUDA data-loader workers (default the cores but one, at most 16; none on the CPU)."),
    config: Optional[Path] = typer.Option(None, help="Settings file overriding config/train.yaml."),
) -> None:
    """Fine-tune a detector on a YOLO dataset; write best.pt, metrics.json and plots to the run folder."""
    from cvtriage.config import load_train_config
    from cvtriage.train.training import ExclusionRule, read_training_dataset, train

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
    dataset = read_training_dataset(data)
    if dataset.problems:
        console.print(data_problems_table(dataset.problems, "Dataset problems", dataset.root))
    result = train(dataset, settings, exclusion=exclusion, save_to=save_to)
    console.print(training_metrics_table(result.metrics))
    console.print(training_usage_line(result.metrics), highlight=False, soft_wrap=True)
    console.print(f"Best weights: {result.best_weights}")
    console.print(f"Metrics and plots: {result.run_dir}")
    for export_format, path in result.exports.items():
        console.print(f"{export_format} export: {path}")
    if result.saved_to is not None:
        console.print(f"Copied the best weights to {result.saved_to}")


def training_metrics_table(metrics: dict[str, Any]):
    """Per-class and overall validation metrics of the best weights (metrics.json's)."""
    from rich.table import Table

    table = Table(title="Validation metrics (best weights)", title_justify="left")
    for column in ("class", "images", "instances", "precision", "recall", "mAP50", "mAP50-95"):
        table.add_column(column, justify="left" if column == "class" else "right")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for name, values in metrics["classes"].items():
        table.add_row(
            name,
            str(values["images"]),
            str(values["instances"]),
            *(cell(values[key]) for key in ("precision", "recall", "map50", "map50_95")),
        )
    overall = metrics["overall"]
    table.add_section()
    table.add_row(
        "all",
        str(metrics["val_images"]),
        str(sum(values["instances"] for values in metrics["classes"].values())),
        *(cell(overall[key]) for key in ("precision", "recall", "map50", "map50_95")),
        style="bold",
    )
    return table


def training_usage_line(metrics: dict[str, Any]) -> str:
    """How the run used the machine (metrics.json's hardware_usage): speed, GPU busy, GPU memory."""
    usage = metrics["hardware_usage"]
    return (
        f"Speed: {usage['images_per_second']:,.0f} images/s in the training passes (batch {metrics['batch']}, "
        f"{metrics['train_seconds']:.0f} s in all); GPU {usage['gpu_utilisation']}; peak GPU memory {usage['peak_gpu_memory']}"
    )


def data_problems_table(problems: list[DataProblem], title: str, root: Path | None = None):
    """A short table of problems, naming each file (relative to the dataset root), capped with a count."""
    from rich.table import Table

    table = Table(title=f"{title} ({len(problems)})", title_justify="left")
    table.add_column("file")
    table.add_column("line", justify="right")
    table.add_column("problem")
    for problem in problems[:PROBLEMS_SHOWN]:
        path = problem.path.relative_to(root) if root and problem.path.is_relative_to(root) else problem.path
        table.add_row(str(path), str(problem.line or ""), problem.message)
    if len(problems) > PROBLEMS_SHOWN:
        table.caption = f"... and {len(problems) - PROBLEMS_SHOWN} more"
    return table

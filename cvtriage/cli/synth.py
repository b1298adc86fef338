"""`cvtriage synth`: synthetic aerial data with exact ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cvtriage.cli.app import ProgressBar, console, synth_app, user_errors

if TYPE_CHECKING:
    from cvtriage.synth.dataset import DatasetSummary
    from cvtriage.synth.video import VideoSummary


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
    workers: Optional[int] = typer.Option(None, min=1, help="Processes drawing images (default: one per CPU core)."),
    ground: str = typer.Option("plain", help="plain, or street: kerbs, lane markings, drains, roof edges, shadows, parked cars."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is not empty."),
) -> None:
    """Draw a YOLO dataset of aerial scenes (nadir and oblique) with exact boxes."""
    from cvtriage.synth.dataset import generate_dataset

    with ProgressBar("Drawing images") as progress:
        summary = generate_dataset(
            out, classes, images=images, imgsz=imgsz, seed=seed, val_fraction=val_fraction,
            min_size=min_size, max_size=max_size, force=force, workers=workers, on_progress=progress, ground=ground,
        )
    console.print(synthetic_dataset_table(summary))
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
    where: str = typer.Option("46.2044,6.1432", metavar="LAT,LON", help="Where on Earth the world lies (its flight log's positions)."),
    telemetry_noise: str = typer.Option(
        "0,0,0", metavar="GPS_M,ALT_M,HEADING_DEG",
        help="Errors of the flight log (standard deviations, drifting as real ones do); 1.5,1,2 is a consumer drone.",
    ),
    site: Optional[int] = typer.Option(
        None, metavar="N", help="Fly the same site N times (OUT-1.mp4, ...): other paths and times of day, objects changed between flights."
    ),
    changes: float = typer.Option(0.2, help="With --site: share of the objects added, removed or moved between two flights."),
    flight_offset: float = typer.Option(0.0, metavar="M", help="With --site: each flight's GPS off by M metres (drift between days)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT and its truth file if they exist."),
) -> None:
    """Fly a camera over a synthetic scene; write the video, its DJI-style flight log (OUT.SRT) and every object's box in every frame."""
    from cvtriage.synth.flight_log import TelemetryNoise
    from cvtriage.synth.video import FlyoverSpec, generate_video

    latitude, longitude = _numbers(where, 2, "--where", "LAT,LON")
    gps, altitude, heading = _numbers(telemetry_noise, 3, "--telemetry-noise", "GPS_M,ALT_M,HEADING_DEG")
    noise = TelemetryNoise(gps, altitude, heading, flight_offset if site else 0.0)
    spec = FlyoverSpec(seconds=seconds, fps=fps, width=width, height=height, seed=seed, objects=objects, names=classes,
                       latitude=latitude, longitude=longitude, noise=noise)  # fmt: skip
    if site is not None:
        from cvtriage.synth.site_flights import generate_site

        with ProgressBar(f"Flying the site {site} times") as progress:
            summaries, site_file = generate_site(out, spec, site, changes, force=force, on_progress=progress)
        for summary in summaries:
            console.print(flyover_table(summary))
        console.print(f"Site truth (objects in each flight, changes between flights): {site_file}")
        return
    with ProgressBar("Writing frames") as progress:
        summary = generate_video(out, spec, force=force, on_progress=progress)
    console.print(flyover_table(summary))


def _numbers(text: str, count: int, flag: str, form: str) -> list[float]:
    """`count` comma-separated numbers, or a one-line CvtriageError naming the flag."""
    from cvtriage.errors import CvtriageError

    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise CvtriageError(f"{flag} {text}: expected {form}, {count} numbers separated by commas")
    return values


def synthetic_dataset_table(summary: DatasetSummary):
    """Images and boxes per split and class, views, and box sizes."""
    import numpy as np
    from rich.table import Table

    table = Table(title=f"Synthetic dataset {summary.out} ({summary.seconds:.1f} s)")
    table.add_column("")
    for split in ("train", "val"):
        table.add_column(split, justify="right")
    table.add_row("images", *(str(summary.images[s]) for s in ("train", "val")))
    for name in summary.names:
        table.add_row(f"boxes: {name}", *(str(summary.boxes[s][name]) for s in ("train", "val")))
    table.add_section()
    table.add_row("views", f"nadir {summary.views['nadir']}", f"oblique {summary.views['oblique']}")
    if summary.long_sides:
        p = np.percentile(summary.long_sides, [5, 50, 95])
        table.add_row("box long side (px)", f"p5 {p[0]:.0f}  p50 {p[1]:.0f}  p95 {p[2]:.0f}", f"min {min(summary.long_sides)}  max {max(summary.long_sides)}")
    return table


def flyover_table(summary: VideoSummary):
    """Frames, objects per class, how long each stays in view, and where the truth went."""
    import numpy as np
    from rich.table import Table

    table = Table(title=f"Synthetic flyover {summary.video} ({summary.seconds:.1f} s)")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("frames", str(summary.frames))
    for name, count in summary.per_class.items():
        table.add_row(f"objects: {name}", str(count))
    if summary.visible_seconds:
        table.add_row("seconds in view (min / median / max)", " / ".join(f"{v:.1f}" for v in np.percentile(summary.visible_seconds, [0, 50, 100])))
    table.add_row("ground truth", str(summary.truth))
    if summary.srt is not None:
        table.add_row("flight log", str(summary.srt))
    return table

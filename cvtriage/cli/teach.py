"""`cvtriage teach`: one turn of the review loop (harvest, train, rescan, compare) in one command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cvtriage.cli.app import app, console, print_warning, user_errors

if TYPE_CHECKING:
    from cvtriage.review.teach import TurnResult

STEP_TITLES = {"harvest": "harvest  frames", "train": "train    epochs", "scan": "rescan   frames", "compare": "compare  videos"}


class StepBars:
    """One progress display for a turn: a bar per step, each fed by that step's on_progress."""

    def __init__(self, steps: dict[str, str]):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console)  # fmt: skip
        self.tasks = {step: self.progress.add_task(title, total=None, detail="", start=False) for step, title in steps.items()}

    def __call__(self, step: str):
        task = self.tasks[step]

        def on_progress(done: int, total: int | None, detail: str = "") -> None:
            self.progress.start_task(task)
            self.progress.update(task, completed=done, total=total, detail=detail)

        return on_progress

    def __enter__(self) -> "StepBars":
        self.progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.stop()


@app.command("teach", rich_help_panel="Review")
@user_errors
def teach_command(
    dataset: str = typer.Argument(..., help="The scan's FiftyOne dataset, its events decided (confirmed, not-object, class:<name>)."),
    merge: Optional[Path] = typer.Option(
        None, help="First turn: a YOLO dataset (with a val split) to add the harvest to; later turns merge into the last turn's data."
    ),
    decisions: Optional[Path] = typer.Option(None, help="CSV of decisions: event_id,decision,class[,video] (with or instead of App tags)."),
    new_class: list[str] = typer.Option([], help="A class name that may look like a typo of a known one but is new (repeatable)."),
    ignore_tag: list[str] = typer.Option([], help="A tag that is not a decision, to leave alone (repeatable)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: config/train.yaml's)."),
    imgsz: Optional[int] = typer.Option(None, help="Training image size in pixels."),
    device: Optional[str] = typer.Option(None, help="Training device: auto (a CUDA GPU when there is one), cpu, cuda or an index."),
    conf: Optional[float] = typer.Option(None, help="The rescan's minimum confidence (default: the reviewed scan's)."),
    out: Path = typer.Option(Path("runs/teach"), help="Parent folder of the turn folders: <out>/<first dataset>/turn-<N>/."),
    next_dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset of the rescan (default <first dataset>-turn<N+1>)."),
    harvest_config: Optional[Path] = typer.Option(None, help="Settings file overriding config/harvest.yaml."),
    train_config: Optional[Path] = typer.Option(None, help="Settings file overriding config/train.yaml."),
) -> None:
    """One turn of the review loop: harvest the decisions, fine-tune the model that scanned, rescan, compare.
    Run it again to resume a turn that was stopped."""
    from cvtriage.config import load_harvest_config, load_train_config
    from cvtriage.database import connect_database
    from cvtriage.review.teach import STEPS, TurnSettings, decided_since, teach

    connect_database()
    settings = TurnSettings(
        harvest=load_harvest_config(harvest_config, new_classes=new_class or None, ignore_tags=ignore_tag or None),
        train=load_train_config(train_config, epochs=epochs, imgsz=imgsz, device=device),
        merge=merge, decisions_csv=decisions, conf=conf, out=out,
        next_dataset=next_dataset,
    )  # fmt: skip
    with StepBars({step: STEP_TITLES[step] for step in STEPS}) as bars:
        result = teach(dataset, settings, progress=bars)
    print_turn(result)
    late = decided_since(result)
    if late:
        print_warning(f"{late} events of {result.dataset} were decided after this turn harvested it: "
                      f"they are not in {result.data_yaml.parent}")  # fmt: skip


def print_turn(result: TurnResult) -> None:
    """The rescan against the reviewed scan, video by video, then where the next turn's queue is."""
    from rich.table import Table

    table = Table(title=f"Turn {result.turn} of {result.dataset}: the rescan (B) against the reviewed scan (A)", title_justify="left")
    columns = ("video", "matched", "class changed", "lost", "gained", "events A", "events B")
    for column in columns:
        table.add_column(column, justify="left" if column == "video" else "right")
    for comparison in result.comparisons:
        counts = comparison.counts
        table.add_row(comparison.a.video["name"], *(str(counts[status]) for status in ("matched", "class changed", "lost", "gained")),
                      str(len(comparison.a.events)), str(len(comparison.b.events)))  # fmt: skip
    console.print(table)
    overall = result.metrics.get("overall", {})
    figures = Table.grid(padding=(0, 2))
    if result.resumed:
        figures.add_row("resumed", f"{', '.join(result.resumed)} done by an earlier run")
    figures.add_row("data", str(result.data_yaml))
    figures.add_row("weights", f"{result.best_weights} (val mAP50 {overall.get('map50', 0):.3f})")
    figures.add_row("compared", str(result.folder / "compare"))
    console.print(figures)
    console.print(f"Next turn: {result.queue} events to review in {result.next_dataset}: "
                  f"cvtriage app {result.next_dataset} --view review-queue, then cvtriage teach {result.next_dataset}",
                  soft_wrap=True, highlight=False)  # fmt: skip

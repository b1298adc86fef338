"""`cvtriage sites`: what changed on a site between flights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cvtriage.cli.app import app, console, print_warning, user_errors


@app.command("sites", rich_help_panel="Triage footage")
@user_errors
def sites_command(
    scans: list[Path] = typer.Argument(
        ..., metavar="SCAN...", help="Two or more scan results folders of one site (<scan out>/<video-stem>/), earliest first."
    ),
    out: Optional[Path] = typer.Option(None, help="Folder for sites.csv/json/png (default runs/sites/<first>-to-<last>)."),
    gate: Optional[float] = typer.Option(
        None, metavar="M", help="Metres within which an object of one flight is the same as one of the next, after alignment (default: from the flights' agreement, 1.5-4 m)."
    ),
    dataset: Optional[str] = typer.Option(None, help="FiftyOne dataset to mark the changes in (default: the one the scans were stored in)."),
    no_dataset: bool = typer.Option(False, "--no-dataset", help="Do not mark the changes in FiftyOne."),
) -> None:
    """Align scans of one site flown on different days and report each object as present, new, gone or moved."""
    from rich.table import Table

    from cvtriage.telemetry.sites_report import SCANNED_INTO, run_sites

    result = run_sites(scans, out=out, gate_m=gate, dataset=None if no_dataset else dataset or SCANNED_INTO)
    for comparison in result.comparisons:
        counts = comparison.counts()
        east, north = comparison.offset
        table = Table(title=f"{comparison.earlier.name} -> {comparison.later.name}", title_justify="left",
                      caption=f"offset {east:+.1f} m east, {north:+.1f} m north (from {comparison.support} objects); "
                      f"gate {comparison.gate_m:.1f} m", caption_justify="left")  # fmt: skip
        for column in ("class", *counts):
            table.add_column(column, justify="left" if column == "class" else "right")
        for name in sorted({change.class_name for change in comparison.changes}):
            table.add_row(name, *(str(sum(c.status == s and c.class_name == name for c in comparison.changes)) for s in counts))
        table.add_row("[bold]all[/]", *(f"[bold]{count}[/]" for count in counts.values()))
        console.print(table)
        for note in comparison.notes:
            print_warning(note)
    outputs = result.outputs
    console.print(f"Results: {outputs['csv'].parent} ({outputs['csv'].name}, {outputs['json'].name}, {outputs['map'].name})",
                  soft_wrap=True, highlight=False)  # fmt: skip
    if result.marked is not None:
        marked = ", ".join(f"{status} {count}" for status, count in result.marked.items())
        console.print(f"FiftyOne dataset {result.dataset}: sightings marked ({marked}); views site-present, site-new, "
                      "site-gone, site-moved", soft_wrap=True, highlight=False)  # fmt: skip

"""`cvtriage sites`' outputs: sites.csv (one row per object and comparison), sites.json (the offsets,
gates and counts too), sites.png (a map of each comparison) and, in FiftyOne, each object's change
on its sightings' samples (`site_change`) with a saved view per change.

In FiftyOne, the later flight's samples get present, new or moved; the earlier flight's samples of
an object that is gone get gone (an object gone has no sample in the later flight). A scan in the
middle of three gets its change from the flight before, and `gone` from the flight after.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from cvtriage.errors import CvtriageError
from cvtriage.files import replaced_on_success
from cvtriage.telemetry.local_frame import LocalFrame
from cvtriage.telemetry.objects import read_objects
from cvtriage.telemetry.sites import (
    STATUSES,
    PairComparison,
    bearing_deg,
    change_label,
    compare_site,
)

SITES_CSV = "sites.csv"
SITES_JSON = "sites.json"
SITES_PNG = "sites.png"
COLUMNS = [
    "earlier", "later", "status", "class_name", "earlier_object", "later_object", "latitude", "longitude",
    "distance_m", "earlier_event_ids", "later_event_ids",
]  # fmt: skip
STATUS_COLOURS = {"present": "0.55", "new": "tab:blue", "gone": "tab:red", "moved": "tab:orange", "not covered": "0.85"}
CHANGE_FIELD = "site_change"
VIEW_PREFIX = "site-"


def rows(comparisons: list[PairComparison], frame: LocalFrame) -> list[dict]:
    out = []
    for comparison in comparisons:
        for change in comparison.changes:
            latitude, longitude = frame.degrees(*change.xy)
            out.append({
                "earlier": comparison.earlier.name, "later": comparison.later.name, "status": change.status,
                "class_name": change.class_name,
                "earlier_object": change.earlier["id"] if change.earlier else "",
                "later_object": change.later["id"] if change.later else "",
                "latitude": round(float(latitude), 7), "longitude": round(float(longitude), 7),
                "distance_m": round(change.distance_m, 2) if change.distance_m is not None else "",
                "earlier_event_ids": ";".join(map(str, change.earlier["event_ids"])) if change.earlier else "",
                "later_event_ids": ";".join(map(str, change.later["event_ids"])) if change.later else "",
            })  # fmt: skip
    return out


def write_site_outputs(out: Path, comparisons: list[PairComparison], frame: LocalFrame) -> dict[str, Path]:
    """sites.csv, sites.json and sites.png in `out` (made if missing), each written whole."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = rows(comparisons, frame)
    paths = {"csv": out / SITES_CSV, "json": out / SITES_JSON, "map": out / SITES_PNG}
    with replaced_on_success(paths["csv"]) as partial, partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    document = {
        "schema": "cvtriage-sites/1",
        "comparisons": [
            {"earlier": str(c.earlier.folder), "later": str(c.later.folder), "offset_m": [round(v, 2) for v in c.offset],
             "offset_bearing_deg": round(bearing_deg(c.offset), 1), "offset_support": c.support,
             "gate_m": round(c.gate_m, 2), "counts": c.counts(), "notes": c.notes}
            for c in comparisons
        ],  # fmt: skip
        "rows": table,
    }
    with replaced_on_success(paths["json"]) as partial:
        partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    write_site_map(paths["map"], comparisons)
    return paths


def write_site_map(path: Path, comparisons: list[PairComparison]) -> None:
    """One panel per comparison, in the earlier flight's metres: both flight paths, each object coloured
    by its change, an arrow for each move."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7 * len(comparisons), 7), dpi=100, layout="constrained")
    for index, comparison in enumerate(comparisons):
        ax = fig.add_subplot(1, len(comparisons), index + 1)
        offset = comparison.offset
        ax.plot(*comparison.earlier.path.T, color="0.7", linewidth=1, label=f"{comparison.earlier.name} path")
        ax.plot(comparison.later.path[:, 0] - offset[0], comparison.later.path[:, 1] - offset[1], color="0.7",
                linewidth=1, linestyle="--", label=f"{comparison.later.name} path (aligned)")  # fmt: skip
        for status in STATUSES:
            found = [change for change in comparison.changes if change.status == status]
            if not found:
                continue
            ax.scatter([c.xy[0] for c in found], [c.xy[1] for c in found], s=40, color=STATUS_COLOURS[status],
                       edgecolor="black", linewidth=0.5, label=f"{status} ({len(found)})", zorder=3)  # fmt: skip
            for change in found:
                ax.annotate(f"{change_label(change)} {change.class_name}", change.xy, fontsize=6, xytext=(4, 4),
                            textcoords="offset points")  # fmt: skip
        for change in comparison.changes:
            if change.status == "moved":
                start = comparison.earlier.xy[comparison.earlier.records.index(change.earlier)]
                ax.annotate("", change.xy, xytext=tuple(start), arrowprops={"arrowstyle": "->", "color": "tab:orange"})
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("metres east")
        ax.set_ylabel("metres north")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        ax.set_title(f"{comparison.earlier.name} -> {comparison.later.name}: offset {comparison.offset[0]:+.1f} E, "
                     f"{comparison.offset[1]:+.1f} N m; gate {comparison.gate_m:.1f} m", fontsize=9)  # fmt: skip
    with replaced_on_success(path) as partial:
        fig.savefig(partial)


def check_markable(dataset_name: str) -> None:
    """The dataset exists and holds scan events: checked before any output is written."""
    import fiftyone as fo

    if not fo.dataset_exists(dataset_name):
        raise CvtriageError(f"FiftyOne dataset '{dataset_name}' does not exist (scan into it, or pass --no-dataset)")
    if "scan_results" not in fo.load_dataset(dataset_name).get_field_schema():
        raise CvtriageError(f"FiftyOne dataset '{dataset_name}' holds no scan events")


def mark_changes_in_fiftyone(dataset_name: str, comparisons: list[PairComparison]) -> dict[str, int]:
    """Each object's change on its sightings' samples (module docstring) and a saved view per
    change (`site-new`, ...); returns samples marked per change. Samples of scans not in the
    dataset are skipped. The dataset is one check_markable has let through."""
    import fiftyone as fo
    from fiftyone import ViewField as F

    from cvtriage.database import dataset_write_lock

    marks: dict[tuple[str, int], str] = {}
    for comparison in comparisons:
        for change in comparison.changes:
            if change.later is not None and change.status in ("present", "new", "moved"):
                for event_id in change.later["event_ids"]:
                    marks[(str(comparison.later.folder), event_id)] = change.status
        for change in comparison.changes:
            if change.status == "gone":
                for event_id in change.earlier["event_ids"]:
                    marks[(str(comparison.earlier.folder), event_id)] = "gone"
    counts = dict.fromkeys(("present", "new", "gone", "moved"), 0)
    with dataset_write_lock(dataset_name):
        dataset = fo.load_dataset(dataset_name)
        if CHANGE_FIELD not in dataset.get_field_schema():
            dataset.add_sample_field(CHANGE_FIELD, fo.StringField)
        view = dataset.match(F("scan_results").is_in(sorted({str(c.earlier.folder) for c in comparisons}
                                                           | {str(c.later.folder) for c in comparisons})))  # fmt: skip
        ids, folders, event_ids = view.values(["id", "scan_results", "event_id"])
        values = {sample_id: marks.get((folder, event_id)) for sample_id, folder, event_id in zip(ids, folders, event_ids)}
        view.set_values(CHANGE_FIELD, values, key_field="id")
        for status in values.values():
            if status is not None:
                counts[status] += 1
        for status in counts:
            dataset.save_view(f"{VIEW_PREFIX}{status}", dataset.match(F(CHANGE_FIELD) == status),
                              description=f"Sightings of objects {status} since the flight before (cvtriage sites)",
                              overwrite=True)  # fmt: skip
    return counts


DEFAULT_OUT = Path("runs/sites")
SCANNED_INTO = "scanned into"  # `dataset`: the FiftyOne dataset the scans were stored in, per their objects.json


@dataclass
class SitesResult:
    comparisons: list[PairComparison]
    outputs: dict[str, Path]
    dataset: str | None
    marked: dict[str, int] | None  # samples marked per change in FiftyOne


def run_sites(folders: list[Path], out: Path | None = None, gate_m: float | None = None,
              dataset: str | None = SCANNED_INTO) -> SitesResult:  # fmt: skip
    """Compare the scans of one site (cvtriage.telemetry.sites), write the outputs to `out`
    (default runs/sites/<first>-to-<last>) and mark the changes in FiftyOne: in `dataset`, by
    default the one the scans were stored in (none when they were scanned without one)."""
    if gate_m is not None and not 0 < gate_m <= 50:
        raise CvtriageError(f"--gate {gate_m:g}: metres, above 0 and at most 50")
    comparisons, frame = compare_site([Path(folder) for folder in folders], gate_m)
    if out is None:
        out = DEFAULT_OUT / f"{comparisons[0].earlier.name}-to-{comparisons[-1].later.name}"
    if dataset == SCANNED_INTO:
        dataset = read_objects(comparisons[-1].later.folder).get("dataset")
    if dataset:
        check_markable(dataset)  # a misspelled name writes nothing
    outputs = write_site_outputs(out, comparisons, frame)
    marked = mark_changes_in_fiftyone(dataset, comparisons) if dataset else None
    return SitesResult(comparisons, outputs, dataset, marked)

"""One object, many sightings: a flight's events of one class whose ground positions agree are one
object (the same ladder passed twice is one row of objects.csv, with both events).

Two events are the same object when they are of one class and their ground positions are closer than
`share` x sqrt(r1^2 + r2^2) (r: each one's 90% uncertainty radius). Two events in view at the same
time are two objects unless they lie within SIMULTANEOUS_M of each other (a tracker's duplicate
track): seen at one moment, their positions share the telemetry's errors, so only the boxes' own
error separates them. Groups are merged closest first, and only
when every pair across them agrees (complete linkage), so a chain of near neighbours never becomes
one long object.

An object's position is its sightings' mean weighted by 1/r^2; its radius the smallest of theirs
(their errors are mostly the same GPS and compass biases, which averaging does not remove).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtriage.errors import CvtriageError
from cvtriage.files import replaced_on_success

SIMULTANEOUS_M = 1.0
OBJECTS_CSV = "objects.csv"
OBJECTS_JSON = "objects.json"
OBJECTS_SCHEMA = "cvtriage-objects/1"
OBJECT_COLUMNS = [
    "object_id", "class_name", "latitude", "longitude", "uncertainty_m", "sightings", "event_ids",
    "first_time_s", "last_time_s", "peak_confidence",
]  # fmt: skip


@dataclass(frozen=True)
class Sighting:
    event_id: int
    class_name: str
    east: float
    north: float
    radius: float
    first_time_s: float
    last_time_s: float
    confidence: float


def group_sightings(sightings: list[Sighting], share: float = 1.0) -> list[list[Sighting]]:
    """Sightings grouped into objects (module docstring), in order of their first sighting."""
    count = len(sightings)
    east = np.array([s.east for s in sightings])
    north = np.array([s.north for s in sightings])
    radius = np.array([s.radius for s in sightings])
    distance = np.hypot(east[:, None] - east[None], north[:, None] - north[None])
    gate = share * np.hypot(radius[:, None], radius[None])
    same_class = np.array([[a.class_name == b.class_name for b in sightings] for a in sightings], bool)
    apart_in_time = np.array(
        [[a.last_time_s < b.first_time_s or b.last_time_s < a.first_time_s for b in sightings] for a in sightings], bool
    ).reshape(count, count)
    compatible = same_class & (distance <= gate) & (apart_in_time | (distance <= SIMULTANEOUS_M))
    groups = {index: [index] for index in range(count)}
    owner = list(range(count))
    for i, j in sorted(zip(*np.nonzero(np.triu(compatible, 1))), key=lambda pair: distance[pair]):
        a, b = owner[i], owner[j]
        if a == b or not compatible[np.ix_(groups[a], groups[b])].all():
            continue
        for member in groups[b]:
            owner[member] = a
        groups[a] += groups.pop(b)
    ordered = sorted(groups.values(), key=lambda members: min(sightings[m].first_time_s for m in members))
    return [[sightings[m] for m in sorted(members, key=lambda m: sightings[m].first_time_s)] for members in ordered]


def object_record(object_id: int, members: list[Sighting]) -> dict:
    """One object of objects.json, in the site's metres (east, north) until `in_degrees`."""
    weights = np.array([1 / max(s.radius, 1e-3) ** 2 for s in members])
    return {
        "id": object_id,
        "class": members[0].class_name,
        "east": float(np.average([s.east for s in members], weights=weights)),
        "north": float(np.average([s.north for s in members], weights=weights)),
        "uncertainty_m": round(min(s.radius for s in members), 2),
        "event_ids": [s.event_id for s in members],
        "first_time_s": min(s.first_time_s for s in members),
        "last_time_s": max(s.last_time_s for s in members),
        "peak_confidence": max(s.confidence for s in members),
    }


def write_objects(folder: Path, document: dict) -> dict[str, Path]:
    """objects.json (the document: schema, video, objects, coverage) and objects.csv, one row per object."""
    folder = Path(folder)
    paths = {"objects_json": folder / OBJECTS_JSON, "objects_csv": folder / OBJECTS_CSV}
    with replaced_on_success(paths["objects_json"]) as partial:
        partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    with replaced_on_success(paths["objects_csv"]) as partial, partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(OBJECT_COLUMNS)
        for record in document["objects"]:
            writer.writerow([
                record["id"], record["class"], record["latitude"], record["longitude"], record["uncertainty_m"],
                len(record["event_ids"]), ";".join(map(str, record["event_ids"])), record["first_time_s"],
                record["last_time_s"], record["peak_confidence"],
            ])  # fmt: skip
    return paths


def read_objects(folder: Path) -> dict:
    """A scan's objects.json; a CvtriageError names what is missing."""
    folder = Path(folder)
    path = folder / OBJECTS_JSON
    if not folder.exists():
        raise CvtriageError(f"{folder}: not found")
    if not folder.is_dir():
        raise CvtriageError(f"{folder}: not a scan's results folder (<scan out>/<video name>/), a file")
    if not path.is_file():
        raise CvtriageError(
            f"{folder}: no {OBJECTS_JSON} (a scan of a video without a flight log, or written by an older cvtriage)"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CvtriageError(f"{path}: cannot read it ({error})") from None
    if document.get("schema") != OBJECTS_SCHEMA:
        raise CvtriageError(f"{path}: not a cvtriage objects file (schema {document.get('schema')!r})")
    return document

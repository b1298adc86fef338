"""What changed on a site between flights: two or more scans of it (results folders with
objects.json), each compared with the one before.

1. Overlap: the flights must have covered some of the same ground (their camera footprints);
   scans of different places are refused in one line.
2. Alignment: GPS puts the same spot metres apart on two days. The offset between two flights is
   estimated from the objects that did not move: every pair of same-class objects within
   MAX_OFFSET_M proposes an offset, the proposal most other pairs agree with (within the gate) wins
   (a consensus vote, RANSAC-like, over all candidate pairs), and the median of its supporters'
   offsets refines it. Fewer than MIN_SUPPORT agreeing pairs: no offset is applied, and the report
   says so.
3. Matching: after alignment, objects of one class are paired one to one by distance (the
   Hungarian method, scipy's linear_sum_assignment) within the gate: present in both. The gate is
   three times the spread of the aligned supporters' residuals (a Rayleigh scale, so unchanged
   objects stay inside it 99% of the time), kept within GATE_M unless given.
4. What is left: a later object inside the earlier flight's footprints is new, an earlier object
   inside the later flight's footprints is gone, one outside the other's footprints was not seen
   by it. A gone and a new object of one class within MOVE_M of each other are paired one to one
   again: moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvtriage.errors import CvtriageError
from cvtriage.telemetry.local_frame import LocalFrame
from cvtriage.telemetry.objects import read_objects

MAX_OFFSET_M = 30.0  # GPS drift between two flights, and how far an object may have been moved
MIN_SUPPORT = 2
GATE_M = (1.5, 4.0)
MOVE_M = 25.0
EDGE_M = 2.0  # an object this close to a footprint's edge may have been cut off: covered only inside it
STATUSES = ("present", "new", "gone", "moved", "not covered")


@dataclass
class SiteScan:
    """One scan's objects in the site's metres."""

    folder: Path
    name: str
    classes: list[str]
    xy: np.ndarray  # (objects, 2) east, north
    radius: np.ndarray
    records: list[dict]  # objects.json's objects
    footprints: list[np.ndarray]  # (4, 2) each
    path: np.ndarray  # (points, 2)

    def covers(self, points: np.ndarray, offset=(0.0, 0.0)) -> np.ndarray:
        """Which points (in the site's metres) lie inside this flight's footprints, EDGE_M inside."""
        from matplotlib.path import Path as Polygon

        if not self.footprints:
            return np.ones(len(points), bool)  # footprints unknown (an oblique camera): assume covered
        inside = np.zeros(len(points), bool)
        shifted = np.asarray(points, float) - np.asarray(offset)
        for footprint in self.footprints:
            polygon = Polygon(footprint)
            inside |= np.all([polygon.contains_points(shifted + step) for step in
                              ((0, 0), (EDGE_M, 0), (-EDGE_M, 0), (0, EDGE_M), (0, -EDGE_M))], axis=0)  # fmt: skip
        return inside


@dataclass
class Change:
    status: str
    class_name: str
    earlier: dict | None  # the object in the earlier scan (objects.json record)
    later: dict | None
    distance_m: float | None  # between the two after alignment (present, moved)
    xy: tuple[float, float]  # where, in the earlier flight's frame


@dataclass
class PairComparison:
    earlier: SiteScan
    later: SiteScan
    offset: tuple[float, float]  # later minus earlier, metres east and north
    support: int  # object pairs that agreed on it
    gate_m: float
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {status: sum(change.status == status for change in self.changes) for status in STATUSES}


def load_site_scan(folder: Path, frame: LocalFrame | None = None) -> tuple[SiteScan, LocalFrame]:
    document = read_objects(folder)
    objects = document["objects"]
    path = document.get("path") or [[o["latitude"], o["longitude"]] for o in objects]
    if not path:
        raise CvtriageError(f"{folder}: its objects.json holds no positions")
    frame = frame or LocalFrame(*path[0])

    def metres(points) -> np.ndarray:
        points = np.asarray(points, float).reshape(-1, 2)
        east, north = frame.metres(points[:, 0], points[:, 1])
        return np.stack([east, north], 1)

    scan = SiteScan(
        Path(folder).resolve(), Path(document["video"]["name"]).stem, [o["class"] for o in objects],
        metres([[o["latitude"], o["longitude"]] for o in objects]), np.array([o["uncertainty_m"] for o in objects]),
        objects, [metres(footprint) for footprint in document.get("coverage", [])], metres(path),
    )  # fmt: skip
    return scan, frame


def check_overlap(a: SiteScan, b: SiteScan) -> None:
    """Refuse two scans whose flights covered no common ground (module docstring)."""
    reach = [max((np.linalg.norm(f - f.mean(0), axis=1).max() for f in s.footprints), default=50.0) for s in (a, b)]
    gaps = np.linalg.norm(a.path[:, None, :] - b.path[None, :, :], axis=2)
    nearest = float(gaps.min())
    if nearest > sum(reach) + MAX_OFFSET_M:
        raise CvtriageError(
            f"{a.folder.name} and {b.folder.name} are scans of different places: their flights come no closer than "
            f"{_distance(nearest)} (no ground seen by both)"
        )


def _distance(metres: float) -> str:
    return f"{metres / 1000:.1f} km" if metres >= 1000 else f"{metres:.0f} m"


def estimate_offset(a: SiteScan, b: SiteScan, gate_m: float) -> tuple[np.ndarray, int, np.ndarray]:
    """(offset, support, supporters' residuals) of the later flight against the earlier."""
    pairs = [(i, j) for i in range(len(a.xy)) for j in range(len(b.xy))
             if a.classes[i] == b.classes[j] and np.linalg.norm(b.xy[j] - a.xy[i]) <= MAX_OFFSET_M]  # fmt: skip
    if not pairs:
        return np.zeros(2), 0, np.zeros(0)
    proposals = np.array([b.xy[j] - a.xy[i] for i, j in pairs])
    agree = np.linalg.norm(proposals[:, None] - proposals[None], axis=2) <= gate_m
    support = [_one_to_one([pairs[k] for k in np.flatnonzero(row)]) for row in agree]
    best = max(range(len(pairs)), key=lambda k: (len(support[k]), -np.linalg.norm(proposals[k])))
    chosen = support[best]
    if len(chosen) < MIN_SUPPORT:
        return np.zeros(2), len(chosen), np.zeros(0)
    offsets = np.array([b.xy[j] - a.xy[i] for i, j in chosen])
    offset = np.median(offsets, axis=0)
    return offset, len(chosen), np.linalg.norm(offsets - offset, axis=1)


def _one_to_one(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pairs using each object once (the first of each kept)."""
    used_a, used_b, kept = set(), set(), []
    for i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            kept.append((i, j))
    return kept


def match(a_xy, a_classes, b_xy, b_classes, limit: float) -> list[tuple[int, int, float]]:
    """One-to-one pairs of the same class within `limit` metres, least total distance (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    if not len(a_xy) or not len(b_xy):
        return []
    distance = np.linalg.norm(np.asarray(a_xy)[:, None] - np.asarray(b_xy)[None], axis=2)
    same = np.array([[x == y for y in b_classes] for x in a_classes], bool)
    allowed = same & (distance <= limit)
    cost = np.where(allowed, distance, limit * 1000 + 1.0)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j), float(distance[i, j])) for i, j in zip(rows, cols) if allowed[i, j]]


def compare_pair(a: SiteScan, b: SiteScan, gate_m: float | None = None) -> PairComparison:
    """What changed from flight `a` to flight `b` (module docstring)."""
    check_overlap(a, b)
    offset, support, residuals = estimate_offset(a, b, gate_m or GATE_M[1])
    notes = []
    if support < MIN_SUPPORT:
        notes.append(f"too few objects in common ({support}) to estimate the offset between the flights: not aligned")
    if gate_m is None:
        scale = float(np.sqrt(np.mean(residuals**2) / 2)) if len(residuals) >= 3 else GATE_M[1] / 3
        gate_m = float(np.clip(3 * scale, *GATE_M))
    aligned = b.xy - offset
    comparison = PairComparison(a, b, (float(offset[0]), float(offset[1])), support, gate_m, notes=notes)
    pairs = match(a.xy, a.classes, aligned, b.classes, gate_m)
    matched_a, matched_b = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    for i, j, distance in pairs:
        comparison.changes.append(Change("present", a.classes[i], a.records[i], b.records[j], distance, tuple(a.xy[i])))
    gone = [i for i in range(len(a.xy)) if i not in matched_a]
    new = [j for j in range(len(b.xy)) if j not in matched_b]
    covered_a = b.covers(a.xy[gone], -offset) if gone else np.zeros(0, bool)  # earlier objects in the later footprints
    covered_b = a.covers(aligned[new]) if new else np.zeros(0, bool)
    gone_in = [i for i, inside in zip(gone, covered_a) if inside]
    new_in = [j for j, inside in zip(new, covered_b) if inside]
    moves = match(a.xy[gone_in], [a.classes[i] for i in gone_in], aligned[new_in], [b.classes[j] for j in new_in], MOVE_M)
    moved_a = {gone_in[i] for i, _, _ in moves}
    moved_b = {new_in[j] for _, j, _ in moves}
    for i, j, distance in moves:
        ia, jb = gone_in[i], new_in[j]
        comparison.changes.append(Change("moved", a.classes[ia], a.records[ia], b.records[jb], distance, tuple(aligned[jb])))
    for i, inside in zip(gone, covered_a):
        if i not in moved_a:
            status = "gone" if inside else "not covered"
            comparison.changes.append(Change(status, a.classes[i], a.records[i], None, None, tuple(a.xy[i])))
    for j, inside in zip(new, covered_b):
        if j not in moved_b:
            status = "new" if inside else "not covered"
            comparison.changes.append(Change(status, b.classes[j], None, b.records[j], None, tuple(aligned[j])))
    return comparison


def compare_site(folders: list[Path], gate_m: float | None = None) -> tuple[list[PairComparison], LocalFrame]:
    """Each scan compared with the one before it, all in the first scan's frame."""
    if len(folders) < 2:
        raise CvtriageError("sites: give two or more scan results folders of one site, earliest first")
    frame = None
    scans = []
    for folder in folders:
        scan, frame = load_site_scan(Path(folder), frame)
        scans.append(scan)
    names = [scan.folder for scan in scans]
    if len(set(names)) < len(names):
        raise CvtriageError("sites: the same results folder is given twice")
    return [compare_pair(a, b, gate_m) for a, b in zip(scans, scans[1:])], frame


def change_label(change: Change) -> str:
    """`O3 -> O5`, `O3`, `-> O5`: the objects a change is about, by their ids in each scan."""
    earlier = f"O{change.earlier['id']}" if change.earlier else ""
    later = f"O{change.later['id']}" if change.later else ""
    return f"{earlier} -> {later}" if earlier and later else earlier or f"-> {later}"


def bearing_deg(offset: tuple[float, float]) -> float:
    return math.degrees(math.atan2(offset[0], offset[1])) % 360

"""`map.png`: where things were found, drawn offline.

The FiftyOne App's map panel needs online map tiles and a Mapbox token; this needs neither: the
flight path and the points on plain longitude/latitude axes, scaled so a metre is as long east
as north (fine for the few kilometres of a flight), with a scale bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from cvtriage.files import replaced_on_success
from cvtriage.telemetry.types import Position

METRES_PER_DEGREE = 111_320.0  # of latitude; of longitude times cos(latitude)


@dataclass(frozen=True)
class MapPoint:
    label: str  # drawn beside the point (an event id, a pair name)
    group: str  # one colour and legend entry per group (a class name)
    position: Position
    radius_m: float | None = None  # drawn as a circle: the position's uncertainty


def _scale_bar_metres(span_m: float) -> float:
    """A round length about a fifth of the map's width."""
    target = max(span_m / 5, 1.0)
    magnitude = 10 ** math.floor(math.log10(target))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= target)


def write_map(path: Path, title: str, points: list[MapPoint], flight_path: list[Position] = ()) -> None:
    """Draw the points (coloured by group, labelled) over the flight path; written whole."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    everything = [point.position for point in points] + list(flight_path)
    if not everything:
        raise ValueError("nothing to draw")
    latitudes = [p.latitude for p in everything]
    longitudes = [p.longitude for p in everything]
    middle = (min(latitudes) + max(latitudes)) / 2
    east_scale = max(math.cos(math.radians(middle)), 1e-6)
    fig = Figure(figsize=(8, 8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_aspect(1 / east_scale, adjustable="datalim")
    if flight_path:
        ax.plot([p.longitude for p in flight_path], [p.latitude for p in flight_path], color="0.6", linewidth=1,
                label="flight path", zorder=1)  # fmt: skip
        ax.plot(flight_path[0].longitude, flight_path[0].latitude, marker="^", color="0.3", linestyle="none",
                label="start", zorder=2)  # fmt: skip
    for number, group in enumerate(sorted({point.group for point in points})):
        members = [point for point in points if point.group == group]
        ax.scatter([m.position.longitude for m in members], [m.position.latitude for m in members],
                   s=36, color=f"C{number % 10}", edgecolor="black", linewidth=0.5, label=f"{group} ({len(members)})",
                   zorder=3)  # fmt: skip
        for member in members:
            if member.radius_m and math.isfinite(member.radius_m):
                ax.add_patch(Ellipse((member.position.longitude, member.position.latitude),
                                     2 * member.radius_m / (METRES_PER_DEGREE * east_scale),
                                     2 * member.radius_m / METRES_PER_DEGREE, fill=False, color=f"C{number % 10}",
                                     linewidth=0.8, alpha=0.7, zorder=2))  # fmt: skip
        if len(points) <= 60:  # labels beyond that are an unreadable smear
            for member in members:
                ax.annotate(member.label, (member.position.longitude, member.position.latitude), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")  # fmt: skip
    span_m = max((max(longitudes) - min(longitudes)) * east_scale, max(latitudes) - min(latitudes)) * METRES_PER_DEGREE
    bar_m = _scale_bar_metres(span_m)
    bar_degrees = bar_m / (METRES_PER_DEGREE * east_scale)
    x0 = min(longitudes)
    y0 = min(latitudes) - 0.05 * max(span_m, 1.0) / METRES_PER_DEGREE
    ax.plot([x0, x0 + bar_degrees], [y0, y0], color="black", linewidth=3)
    ax.annotate(f"{bar_m:g} m", (x0 + bar_degrees / 2, y0), xytext=(0, 5), textcoords="offset points",
                ha="center", fontsize=8)  # fmt: skip
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title)
    with replaced_on_success(path) as partial:
        fig.savefig(partial)

"""Shapes for drawing things as seen from above: outlines in drawing units (metres), colour
variation, and `Drawing`, a thing's look as filled polygons and stroked polylines painted in order.

Colours are RGB, 0..255; convert to BGR only when writing files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

RGB = tuple[float, float, float]


def ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return rotate_points(np.stack([rx * np.cos(t), ry * np.sin(t)], 1), angle) + (cx, cy)


def arc_points(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 12) -> np.ndarray:
    t = np.linspace(start, end, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def rect_points(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def rounded_rect_points(x0: float, y0: float, x1: float, y1: float, radius: float, n: int = 5) -> np.ndarray:
    r = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)
    corners = [(x1 - r, y1 - r, 0.0), (x0 + r, y1 - r, np.pi / 2), (x0 + r, y0 + r, np.pi), (x1 - r, y0 + r, 1.5 * np.pi)]
    return np.concatenate([arc_points(cx, cy, r, r, a, a + np.pi / 2, n) for cx, cy, a in corners])


def blob_points(rng: np.random.Generator, cx: float, cy: float, radius: float, roughness: float = 0.25, n: int = 14) -> np.ndarray:
    """An irregular closed outline (rocks, bushes): a circle with smoothed random radii."""
    radii = 1 + roughness * rng.standard_normal(n)
    radii = np.clip((radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3, 0.4, 1.6) * radius
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], 1)


def bezier_points(points: list[tuple[float, float]], n: int = 16) -> np.ndarray:
    """A quadratic/cubic Bezier curve through its control points (hoses, straps)."""
    p = np.repeat(np.asarray(points, dtype=np.float64)[None], n, 0)  # De Casteljau, all t at once
    t = np.linspace(0, 1, n)[:, None, None]
    while p.shape[1] > 1:
        p = p[:, :-1] * (1 - t) + p[:, 1:] * t
    return p[:, 0]



def rotate_points(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def jitter(rgb: RGB, rng: np.random.Generator, amount: float = 12.0) -> RGB:
    """A colour varied mostly in brightness, a little in hue."""
    shift = rng.normal(0, amount) + rng.normal(0, amount / 4, 3)
    return tuple(float(v) for v in np.clip(np.asarray(rgb, np.float64) + shift, 0, 255))  # type: ignore[return-value]


def shade(rgb: RGB, factor: float) -> RGB:
    return tuple(float(np.clip(v * factor, 0, 255)) for v in rgb)  # type: ignore[return-value]


@dataclass
class Drawing:
    """A thing's look from above in its own units (metres): parts painted in order.

    shadow_height: how high the thing stands (its shadow falls that far, times the sun's slant);
    shadow_sweep: True for things standing on the ground (the shadow joins the base), False for
    things held up (an antenna on a mast casts a detached copy of itself).
    """

    shadow_height: float = 0.05
    shadow_sweep: bool = True
    parts: list[tuple[str, np.ndarray, float, RGB]] = field(default_factory=list)

    def fill(self, points: np.ndarray, rgb: RGB) -> None:
        self.parts.append(("fill", np.asarray(points, dtype=np.float64), 0.0, rgb))

    def stroke(self, points, width: float, rgb: RGB) -> None:
        self.parts.append(("stroke", np.asarray(points, dtype=np.float64), float(width), rgb))

    def bounds(self) -> tuple[float, float, float, float]:
        lows, highs = [], []
        for _, points, width, _ in self.parts:
            lows.append(points.min(0) - width / 2)
            highs.append(points.max(0) + width / 2)
        low, high = np.min(lows, 0), np.max(highs, 0)
        return float(low[0]), float(low[1]), float(high[0]), float(high[1])


DrawFn = Callable[[np.random.Generator], Drawing]

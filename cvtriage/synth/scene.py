"""Synthetic aerial scenes: procedural ground, things drawn as seen from above, and a canvas that
remembers which pixels of every labelled object stay visible after later layers cover them.

Shared by the dataset (one scene per image) and the flyover video (one long scene, many crops),
so both draw the same things the same way. Colours are RGB, 0..255; convert to BGR only when
writing files.

An object's look is a `Drawing`: filled polygons and stroked polylines in its own units (metres),
painted in order. `Scene.sprite` rasterises it at a size, angle and place (supersampled, so thin
rails and rods fade the way they do in a real image) with its shadow; `Scene.paint` composites it
and, for a labelled object, keeps its still-visible alpha, from which its box is measured.
`Scene(hide_objects=True)` consumes the same random numbers but leaves labelled objects (and their
shadows) out, which renders the empty background under every box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

RGB = tuple[float, float, float]

# Alpha above which a pixel counts as part of an object when its box is measured.
VISIBLE_ALPHA = 0.25
# Thinner strokes than this (output pixels) are widened: a real sensor still shows a bright thin
# rod as a faint line rather than losing it.
MIN_STROKE_PX = 0.7


# ----------------------------------------------------------------------------------------------
# Geometry helpers (drawing units)


def ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return _rotate(np.stack([rx * np.cos(t), ry * np.sin(t)], 1), angle) + (cx, cy)


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


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def jitter(rgb: RGB, rng: np.random.Generator, amount: float = 12.0) -> RGB:
    """A colour varied mostly in brightness, a little in hue."""
    shift = rng.normal(0, amount) + rng.normal(0, amount / 4, 3)
    return tuple(float(v) for v in np.clip(np.asarray(rgb, np.float64) + shift, 0, 255))  # type: ignore[return-value]


def shade(rgb: RGB, factor: float) -> RGB:
    return tuple(float(np.clip(v * factor, 0, 255)) for v in rgb)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Drawings


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

ALUMINIUM: RGB = (196, 198, 204)
BLACK_RUBBER: RGB = (32, 32, 34)


def draw_ladder(rng: np.random.Generator) -> Drawing:
    """Two rails and evenly spaced rungs; sometimes an extension section lying on top."""
    length, width = rng.uniform(2.0, 5.0), rng.uniform(0.36, 0.55)
    material = rng.choice(["aluminium", "aluminium", "fibreglass", "wood"])
    if material == "aluminium":
        rail = rung = jitter(ALUMINIUM, rng, 10)
    elif material == "fibreglass":
        rail, rung = jitter(rng.choice([(235, 190, 30), (230, 120, 30), (60, 110, 200)]), rng, 10), jitter(ALUMINIUM, rng, 8)
    else:
        rail = rung = jitter((160, 115, 70), rng, 14)
    rail_width, rung_width = rng.uniform(0.05, 0.085), rng.uniform(0.035, 0.05)
    drawing = Drawing(shadow_height=0.06, shadow_sweep=True)

    def section(x0: float, x1: float, half: float) -> None:
        count = max(3, int((x1 - x0) / rng.uniform(0.26, 0.32)))
        for x in x0 + (np.arange(count) + 0.5) * (x1 - x0) / count:
            drawing.stroke([[x, -half], [x, half]], rung_width, rung)
        for side in (-1, 1):
            y = side * half
            drawing.fill(rect_points(x0, y - rail_width / 2, x1, y + rail_width / 2), rail)
            drawing.stroke([[x0, y - side * rail_width * 0.2], [x1, y - side * rail_width * 0.2]], rail_width * 0.3, shade(rail, 1.18))
        for x in (x0, x1 - 0.07):  # rubber feet / end caps
            for side in (-1, 1):
                drawing.fill(rect_points(x, side * half - rail_width * 0.6, x + 0.07, side * half + rail_width * 0.6), BLACK_RUBBER)

    section(0.0, length, width / 2)
    if rng.random() < 0.3:  # extension ladder: a narrower fly section overlapping the base
        start = rng.uniform(0.2, 0.5) * length
        section(start, start + length * rng.uniform(0.6, 0.9), width / 2 - rail_width * 1.2)
    return drawing


def draw_extinguisher(rng: np.random.Generator) -> Drawing:
    """A red cylinder with a valve head, lever handle, black hose and nozzle: lying or standing."""
    red = jitter((205, 28, 32), rng, 14)
    dark_red, light_red = shade(red, 0.7), tuple(min(255.0, v * 1.25 + 25) for v in red)
    steel, black = jitter((175, 175, 180), rng, 10), jitter((28, 28, 30), rng, 4)
    if rng.random() < 0.6:  # lying on its side
        length, r = rng.uniform(0.42, 0.62), rng.uniform(0.065, 0.1)
        drawing = Drawing(shadow_height=2 * r, shadow_sweep=True)
        drawing.fill(rounded_rect_points(0, -r, length, r, r * 0.9), red)
        drawing.stroke([[r * 0.6, r * 0.6], [length - r * 0.5, r * 0.6]], r * 0.5, dark_red)
        drawing.stroke([[r * 0.6, -r * 0.45], [length - r * 0.6, -r * 0.45]], r * 0.3, light_red)
        if rng.random() < 0.7:  # instruction label
            x0 = length * rng.uniform(0.25, 0.4)
            drawing.fill(rect_points(x0, -r * 0.75, x0 + length * 0.28, r * 0.75), jitter((235, 230, 215), rng, 10))
            for k in range(3):
                y = -r * 0.4 + k * r * 0.35
                drawing.stroke([[x0 + length * 0.03, y], [x0 + length * 0.22, y]], r * 0.1, (60, 50, 50))
        head = length + r * 0.5
        drawing.fill(rect_points(length - r * 0.1, -r * 0.45, head, r * 0.45), steel)
        drawing.stroke([[head - r * 0.2, -r * 0.2], [head + r * 1.6, -r * 0.9]], r * 0.28, black)  # lever
        drawing.stroke([[head - r * 0.3, r * 0.1], [head + r * 1.3, r * 0.6]], r * 0.25, steel)  # carry handle
        end = (length * rng.uniform(0.2, 0.55), r * rng.uniform(1.6, 2.6) * rng.choice([-1, 1]))
        hose = bezier_points([(head - r * 0.2, r * 0.35), (head + r * 1.5, r * 2.2), (length * 0.8, end[1] * 1.4), end])
        drawing.stroke(hose, r * 0.3, black)
        direction = (hose[-1] - hose[-2]) / (np.linalg.norm(hose[-1] - hose[-2]) + 1e-9)
        tip = hose[-1] + direction * r * 1.1
        normal = np.array([-direction[1], direction[0]]) * r * 0.28
        drawing.fill(np.array([hose[-1] + normal, tip + normal * 0.5, tip - normal * 0.5, hose[-1] - normal]), black)
        return drawing
    # standing upright: from above a red disc, the valve in the middle, lever and hose leaving it
    r = rng.uniform(0.065, 0.1)
    drawing = Drawing(shadow_height=rng.uniform(0.45, 0.65), shadow_sweep=True)
    drawing.fill(ellipse_points(0, 0, r, r), red)
    drawing.stroke(arc_points(0, 0, r * 0.82, r * 0.82, 0.3, 2.6), r * 0.22, dark_red)
    drawing.stroke(arc_points(0, 0, r * 0.8, r * 0.8, 3.6, 5.4), r * 0.15, light_red)
    drawing.fill(ellipse_points(0, 0, r * 0.38, r * 0.38), steel)
    angle = rng.uniform(0, 2 * np.pi)
    lever = _rotate(np.array([[-r * 0.3, 0.0], [r * 1.3, 0.0]]), angle)
    drawing.stroke(lever, r * 0.26, black)
    side = rng.choice([-1, 1])
    hose = bezier_points([(0, 0), (r * 0.6, side * r * 1.2), (r * 1.6, side * r * 1.6), (r * rng.uniform(1.8, 2.6), side * r * rng.uniform(0.2, 1.2))])
    hose = _rotate(hose, angle + rng.uniform(1.0, 2.0))
    drawing.stroke(hose, r * 0.28, black)
    drawing.fill(ellipse_points(*hose[-1], r * 0.22, r * 0.22), black)
    return drawing


BAG_COLOURS: list[RGB] = [(30, 30, 34), (35, 45, 80), (80, 90, 50), (110, 110, 115), (170, 40, 40), (40, 90, 170), (175, 150, 105), (210, 90, 140), (230, 130, 30)]


def draw_bag(rng: np.random.Generator) -> Drawing:
    """A backpack (straps, pocket, zip), a duffel (end panels, handles, shoulder strap) or a tote."""
    body = jitter(BAG_COLOURS[rng.integers(len(BAG_COLOURS))], rng, 10)
    darker, lighter = shade(body, 0.65), tuple(min(255.0, v * 1.3 + 20) for v in body)
    strap = jitter((25, 25, 28), rng, 5) if rng.random() < 0.5 else darker
    kind = rng.choice(["backpack", "duffel", "tote"])
    if kind == "backpack":
        length, width = rng.uniform(0.4, 0.5), rng.uniform(0.28, 0.34)
        drawing = Drawing(shadow_height=rng.uniform(0.12, 0.2))
        drawing.fill(rounded_rect_points(0, -width / 2, length, width / 2, width * 0.3), body)
        drawing.fill(rounded_rect_points(length * 0.7, -width * 0.45, length, width * 0.45, width * 0.3), lighter)  # top flap
        drawing.fill(rounded_rect_points(length * 0.1, -width * 0.33, length * 0.5, width * 0.33, width * 0.12), darker)  # pocket
        drawing.stroke([[length * 0.5, -width * 0.3], [length * 0.5, width * 0.3]], width * 0.03, (200, 200, 200))  # zip
        for side in (-1, 1):  # shoulder straps
            drawing.stroke(bezier_points([(length * 0.95, side * width * 0.25), (length * 0.5, side * width * 0.42), (length * 0.05, side * width * 0.3)]), width * 0.1, strap)
        drawing.stroke(arc_points(length, 0, width * 0.12, width * 0.14, -np.pi / 2, np.pi / 2), width * 0.05, strap)  # grab loop
        return drawing
    if kind == "duffel":
        length, width = rng.uniform(0.55, 0.75), rng.uniform(0.26, 0.34)
        drawing = Drawing(shadow_height=width * 0.9)
        drawing.fill(rounded_rect_points(0, -width / 2, length, width / 2, width * 0.45), body)
        for x in (width * 0.12, length - width * 0.12):
            drawing.fill(ellipse_points(x, 0, width * 0.12, width * 0.48), darker)
        drawing.stroke([[width * 0.3, 0], [length - width * 0.3, 0]], width * 0.04, (190, 190, 190))  # zip
        for x in (length * 0.38, length * 0.62):  # carry handles
            drawing.stroke(arc_points(x, 0, width * 0.1, width * 0.3, -np.pi / 2, np.pi / 2), width * 0.07, strap)
        strap_end = (length * rng.uniform(0.3, 0.7), width * rng.uniform(0.7, 1.2) * rng.choice([-1, 1]))
        drawing.stroke(bezier_points([(width * 0.1, 0), (length * 0.3, strap_end[1] * 1.5), strap_end, (length - width * 0.1, 0)]), width * 0.08, strap)
        return drawing
    length, width = rng.uniform(0.35, 0.45), rng.uniform(0.14, 0.2)
    drawing = Drawing(shadow_height=rng.uniform(0.2, 0.3))
    drawing.fill(np.array([[0, -width / 2], [length, -width / 2], [length * 0.92, width / 2], [length * 0.08, width / 2]]), body)
    drawing.stroke([[length * 0.05, -width * 0.42], [length * 0.95, -width * 0.42]], width * 0.08, lighter)
    for x in (length * 0.3, length * 0.7):  # handles, flopped over the side
        drawing.stroke(arc_points(x, -width / 2, length * 0.13, width * 0.9, np.pi, 2 * np.pi), width * 0.07, strap)
    return drawing


def draw_antenna(rng: np.random.Generator) -> Drawing:
    """A Yagi or log-periodic antenna: a boom with cross elements, a driven element, the mast clamp."""
    metal, insulator = jitter(ALUMINIUM, rng, 10), jitter((30, 30, 32), rng, 4)
    boom = rng.uniform(1.2, 2.8)
    rod = rng.uniform(0.018, 0.03)
    on_mast = rng.random() < 0.75
    # On a mast it floats above the ground: a detached shadow; lying on a roof it casts a thin one.
    drawing = Drawing(shadow_height=rng.uniform(1.0, 2.5) if on_mast else 0.04, shadow_sweep=not on_mast)
    drawing.stroke([[0, 0], [boom, 0]], rod * 1.8, metal)
    count = int(rng.integers(6, 14))
    xs = np.linspace(0.05, boom - 0.05, count)
    if rng.random() < 0.6:  # Yagi: long reflector, driven element, shorter directors
        half = rng.uniform(0.3, 0.45) * np.concatenate([[1.0, 0.92], np.linspace(0.8, 0.6, count - 2)])
    else:  # log-periodic: elements shrink steadily along the boom
        half = np.linspace(rng.uniform(0.35, 0.5), rng.uniform(0.08, 0.14), count)
    for x, h in zip(xs, half):
        drawing.stroke([[x, -h], [x, h]], rod, metal)
        drawing.fill(rect_points(x - rod * 1.5, -rod * 1.8, x + rod * 1.5, rod * 1.8), insulator)
    driven = xs[1]
    drawing.stroke(rounded_rect_points(driven - 0.035, -half[1], driven + 0.035, half[1], 0.03), rod * 0.8, metal)  # folded dipole
    drawing.fill(rect_points(driven + 0.04, -0.05, driven + 0.12, 0.05), insulator)  # balun box
    clamp = boom * rng.uniform(0.3, 0.5)
    drawing.fill(rect_points(clamp - 0.05, -0.06, clamp + 0.05, 0.06), shade(metal, 0.75))
    drawing.fill(ellipse_points(clamp, 0, 0.035, 0.035), shade(metal, 0.55))  # the mast's top, end-on
    return drawing


# -- look-alikes: never labelled, drawn so a detector has to learn the differences ----------------


def draw_red_cylinder(rng: np.random.Generator) -> Drawing:
    """Red or orange cylinders that are not extinguishers: gas bottles, buckets, bins (no hose)."""
    red = jitter(rng.choice([(200, 30, 30), (215, 70, 25), (170, 25, 35)]), rng, 12)
    kind = rng.integers(3)
    if kind == 0:  # gas bottle lying down: plain body and a grey cap
        length, r = rng.uniform(0.5, 1.2), rng.uniform(0.1, 0.16)
        drawing = Drawing(shadow_height=2 * r)
        drawing.fill(rounded_rect_points(0, -r, length, r, r * 0.9), red)
        drawing.stroke([[r, -r * 0.45], [length - r, -r * 0.45]], r * 0.3, shade(red, 1.3))
        drawing.fill(ellipse_points(length + r * 0.2, 0, r * 0.45, r * 0.45), (150, 150, 150))
        return drawing
    if kind == 1:  # bucket from above: a rim and the darker inside
        r = rng.uniform(0.12, 0.2)
        drawing = Drawing(shadow_height=r * 2)
        drawing.fill(ellipse_points(0, 0, r, r), red)
        drawing.fill(ellipse_points(0, 0, r * 0.82, r * 0.82), shade(red, 0.55))
        if rng.random() < 0.5:
            drawing.stroke(arc_points(0, 0, r * 0.9, r * 0.9, 0, np.pi), r * 0.06, (140, 140, 140))  # handle
        return drawing
    width = rng.uniform(0.25, 0.6)  # traffic cone / bin: square base, disc on top
    drawing = Drawing(shadow_height=width * 1.5)
    drawing.fill(rounded_rect_points(-width / 2, -width / 2, width / 2, width / 2, width * 0.1), shade(red, 0.8))
    drawing.fill(ellipse_points(0, 0, width * 0.3, width * 0.3), red)
    drawing.stroke(ellipse_points(0, 0, width * 0.22, width * 0.22), width * 0.06, (235, 235, 235))
    return drawing


def draw_stripes(rng: np.random.Generator) -> Drawing:
    """Striped things that are not ladders: pallets, benches, paving bars, stacked planks."""
    kind = rng.integers(3)
    wood = jitter((175, 140, 95), rng, 18)
    if kind == 0:  # pallet: deck boards across three stringers (stringers hidden under the boards)
        length, width = 1.2, 0.8
        drawing = Drawing(shadow_height=0.14)
        drawing.fill(rect_points(0, -width / 2, length, width / 2), shade(wood, 0.45))
        for x in np.linspace(0, length - 0.1, int(rng.integers(5, 8))):
            drawing.fill(rect_points(x, -width / 2, x + 0.1, width / 2), jitter(wood, rng, 8))
        return drawing
    if kind == 1:  # bench: long slats along, no rungs
        length = rng.uniform(1.5, 2.2)
        drawing = Drawing(shadow_height=0.45, shadow_sweep=False)
        colour = jitter(rng.choice([(150, 105, 65), (60, 90, 60), (120, 120, 125)]), rng, 10)
        for k in range(int(rng.integers(3, 6))):
            y = k * 0.12
            drawing.fill(rect_points(0, y, length, y + 0.09), jitter(colour, rng, 6))
        return drawing
    bars = int(rng.integers(4, 9))  # painted bars / planks side by side
    drawing = Drawing(shadow_height=0.01)
    colour = jitter(rng.choice([(235, 235, 230), (235, 200, 40), (175, 140, 95)]), rng, 10)
    length, gap = rng.uniform(1.5, 3.5), rng.uniform(0.3, 0.6)
    for k in range(bars):
        drawing.fill(rect_points(0, k * gap, length, k * gap + gap * 0.5), colour)
    return drawing


def draw_pole(rng: np.random.Generator) -> Drawing:
    """Rods that are not antennas: a pipe with couplings, a rake, a lamp arm."""
    metal = jitter(rng.choice([ALUMINIUM, (120, 120, 125), (60, 60, 65)]), rng, 10)
    length, thick = rng.uniform(1.5, 4.0), rng.uniform(0.03, 0.08)
    drawing = Drawing(shadow_height=0.05)
    drawing.stroke([[0, 0], [length, 0]], thick, metal)
    kind = rng.integers(3)
    if kind == 0:
        for x in np.sort(rng.uniform(0, length, 2)):
            drawing.fill(rect_points(x - thick, -thick * 0.9, x + thick, thick * 0.9), shade(metal, 0.8))
    elif kind == 1:  # rake head: one crossbar with short teeth
        drawing.stroke([[length, -0.25], [length, 0.25]], thick * 1.2, metal)
        for y in np.linspace(-0.23, 0.23, 10):
            drawing.stroke([[length, y], [length + 0.08, y]], thick * 0.4, metal)
    else:  # lamp arm with the lamp box at the end
        drawing.fill(rounded_rect_points(length, -0.12, length + 0.5, 0.12, 0.05), shade(metal, 0.9))
    return drawing


def draw_rock(rng: np.random.Generator) -> Drawing:
    """Rocks and tyres: bag-sized dark blobs that are not bags."""
    if rng.random() < 0.35:
        r = rng.uniform(0.28, 0.38)
        drawing = Drawing(shadow_height=0.2)
        drawing.fill(ellipse_points(0, 0, r, r), (28, 28, 30))
        drawing.fill(ellipse_points(0, 0, r * 0.55, r * 0.55), jitter((95, 95, 95), rng, 25))
        drawing.stroke(ellipse_points(0, 0, r * 0.78, r * 0.78), r * 0.06, (55, 55, 58))
        return drawing
    r = rng.uniform(0.15, 0.5)
    drawing = Drawing(shadow_height=r * 0.8)
    colour = jitter(rng.choice([(130, 125, 120), (150, 135, 110), (90, 90, 95)]), rng, 15)
    drawing.fill(blob_points(rng, 0, 0, r, 0.2), colour)
    drawing.fill(blob_points(rng, -r * 0.2, -r * 0.2, r * 0.5, 0.3), shade(colour, 1.2))
    return drawing


def draw_bush(rng: np.random.Generator) -> Drawing:
    """A bush or tree crown: overlapping leafy lobes, lit on one side (also used to occlude)."""
    r = rng.uniform(0.5, 3.0)
    green = jitter(rng.choice([(55, 95, 40), (70, 110, 45), (40, 75, 35), (95, 110, 55)]), rng, 10)
    drawing = Drawing(shadow_height=r * rng.uniform(0.8, 2.0), shadow_sweep=False)
    drawing.fill(blob_points(rng, 0, 0, r, 0.18, 18), shade(green, 0.8))
    for _ in range(int(rng.integers(6, 14))):
        cx, cy = rng.normal(0, r * 0.45, 2)
        drawing.fill(blob_points(rng, cx, cy, r * rng.uniform(0.25, 0.45), 0.25, 10), jitter(shade(green, rng.uniform(0.85, 1.3)), rng, 6))
    return drawing


def draw_car(rng: np.random.Generator) -> Drawing:
    paint = jitter(rng.choice([(220, 220, 222), (30, 30, 35), (150, 150, 155), (160, 30, 30), (40, 60, 130)]), rng, 8)
    length, width = rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.9)
    glass = (40, 48, 58)
    drawing = Drawing(shadow_height=1.4)
    drawing.fill(rounded_rect_points(0, -width / 2, length, width / 2, 0.45), paint)
    drawing.fill(np.array([[length * 0.62, -width * 0.42], [length * 0.78, -width * 0.38], [length * 0.78, width * 0.38], [length * 0.62, width * 0.42]]), glass)
    drawing.fill(np.array([[length * 0.2, -width * 0.4], [length * 0.3, -width * 0.42], [length * 0.3, width * 0.42], [length * 0.2, width * 0.4]]), glass)
    drawing.fill(rounded_rect_points(length * 0.3, -width * 0.4, length * 0.62, width * 0.4, 0.2), shade(paint, 1.06))
    return drawing


def draw_debris(rng: np.random.Generator) -> Drawing:
    """Small litter: papers, leaves, a plank, a tile."""
    colour = jitter(rng.choice([(230, 230, 225), (140, 100, 60), (90, 70, 40), (200, 180, 120), (60, 60, 60)]), rng, 20)
    drawing = Drawing(shadow_height=0.02)
    size = rng.uniform(0.1, 0.6)
    if rng.random() < 0.5:
        drawing.fill(rect_points(0, 0, size, size * rng.uniform(0.2, 1.0)), colour)
    else:
        drawing.fill(blob_points(rng, 0, 0, size / 2, 0.3, 8), colour)
    return drawing


OBJECT_DRAWERS: dict[str, DrawFn] = {
    "ladder": draw_ladder,
    "fire extinguisher": draw_extinguisher,
    "bag": draw_bag,
    "antenna": draw_antenna,
}
# Look-alikes, each meant to confuse one class, with their real-world long side range (metres).
LOOKALIKE_DRAWERS: list[DrawFn] = [draw_red_cylinder, draw_stripes, draw_pole, draw_rock]
CLUTTER_DRAWERS: list[tuple[DrawFn, float]] = [(draw_bush, 3.0), (draw_debris, 4.0), (draw_car, 0.7), (draw_rock, 1.5)]


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Sizes: as many small as large things per octave."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def pick(rng: np.random.Generator, weighted: list[tuple[DrawFn, float]]) -> DrawFn:
    weights = np.array([w for _, w in weighted])
    return weighted[rng.choice(len(weighted), p=weights / weights.sum())][0]


# ----------------------------------------------------------------------------------------------
# Rasterising and compositing


@dataclass
class Patch:
    """A single-channel float image placed at (x0, y0) of a canvas: alpha, shadow or visibility."""

    x0: int
    y0: int
    alpha: np.ndarray

    def box(self, threshold: float = VISIBLE_ALPHA) -> tuple[int, int, int, int] | None:
        """Tight box (x1, y1, x2, y2, exclusive ends) of the pixels above threshold, or None."""
        mask = self.alpha >= threshold
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if not len(rows):
            return None
        return self.x0 + int(cols[0]), self.y0 + int(rows[0]), self.x0 + int(cols[-1]) + 1, self.y0 + int(rows[-1]) + 1


@dataclass
class Sprite:
    """A rasterised drawing: premultiplied colour and alpha at (x0, y0), and its shadow."""

    x0: int
    y0: int
    color: np.ndarray  # (h, w, 3) float32, premultiplied by alpha
    alpha: np.ndarray  # (h, w) float32 0..1
    shadow: Patch | None

    @property
    def patch(self) -> Patch:
        return Patch(self.x0, self.y0, self.alpha)


@dataclass
class PlacedObject:
    class_id: int
    visible: Patch  # the object's alpha times what later layers left uncovered
    drawn_area: float  # alpha sum when painted, before anything covered it


def overlap(a_x0: int, a_y0: int, a_shape: tuple, b_x0: int, b_y0: int, b_shape: tuple):
    """Slices of a and of b covering their intersection, or None when they do not meet."""
    x0, y0 = max(a_x0, b_x0), max(a_y0, b_y0)
    x1, y1 = min(a_x0 + a_shape[1], b_x0 + b_shape[1]), min(a_y0 + a_shape[0], b_y0 + b_shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return (
        (slice(y0 - a_y0, y1 - a_y0), slice(x0 - a_x0, x1 - a_x0)),
        (slice(y0 - b_y0, y1 - b_y0), slice(x0 - b_x0, x1 - b_x0)),
    )


def rasterize(drawing: Drawing, center: tuple[float, float], size: float, angle: float, light: tuple[float, float] = (0.0, 0.0)) -> Sprite:
    """Draw `drawing` with its long side `size` px, rotated by `angle`, centred at `center` (canvas px).

    Supersampled (4x for small sprites) and area-averaged, so sub-pixel parts come out as partial
    alpha. `light` is the direction towards the sun: the lit half is brightened a little.
    """
    bx0, by0, bx1, by1 = drawing.bounds()
    scale = size / max(bx1 - bx0, by1 - by0)
    mid = np.array([(bx0 + bx1) / 2, (by0 + by1) / 2])
    min_width = MIN_STROKE_PX / scale
    parts = []
    for kind, points, width, rgb in drawing.parts:
        placed = _rotate((points - mid) * scale, angle) + center
        parts.append((kind, placed, max(width, min_width) * scale if kind == "stroke" else 0.0, rgb))
    all_points = np.concatenate([p for _, p, _, _ in parts])
    pad = max(w for _, _, w, _ in parts) / 2 + 2
    x0, y0 = int(np.floor(all_points[:, 0].min() - pad)), int(np.floor(all_points[:, 1].min() - pad))
    x1, y1 = int(np.ceil(all_points[:, 0].max() + pad)), int(np.ceil(all_points[:, 1].max() + pad))
    w, h = x1 - x0, y1 - y0
    ss = 4 if size < 60 else 2 if size < 300 else 1
    color = np.zeros((h * ss, w * ss, 3), np.uint8)
    alpha = np.zeros((h * ss, w * ss), np.uint8)
    bits = 4  # cv2 sub-pixel precision: coordinates in 1/16 px
    for kind, placed, width, rgb in parts:
        fixed = np.round((placed - (x0, y0)) * ss * (1 << bits)).astype(np.int32)[None]
        if kind == "fill":
            cv2.fillPoly(color, fixed, rgb, cv2.LINE_8, bits)
            cv2.fillPoly(alpha, fixed, 255, cv2.LINE_8, bits)
        else:
            thickness = max(1, int(round(width * ss)))
            cv2.polylines(color, fixed, False, rgb, thickness, cv2.LINE_8, bits)
            cv2.polylines(alpha, fixed, False, 255, thickness, cv2.LINE_8, bits)
    if ss > 1:
        color = cv2.resize(color, (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    color = color.astype(np.float32)
    if light != (0.0, 0.0):
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        lit = ((xs + x0 - center[0]) * light[0] + (ys + y0 - center[1]) * light[1]) / (size / 2)
        color *= (1 + 0.12 * np.clip(lit, -1, 1))[..., None]
    return Sprite(x0, y0, color, alpha.astype(np.float32) / 255, None)


def cast_shadow(sprite: Sprite, offset: tuple[float, float], sweep: bool, softness: float) -> Patch:
    """The sprite's shadow on the ground: its alpha moved by `offset` (swept from 0 when standing)."""
    dx, dy = offset
    pad = int(np.ceil(softness * 2)) + 1
    h, w = sprite.alpha.shape
    ox, oy = int(np.floor(min(0.0, dx))) - pad, int(np.floor(min(0.0, dy))) - pad
    out = np.zeros((h + int(np.ceil(abs(dy))) + 2 * pad + 1, w + int(np.ceil(abs(dx))) + 2 * pad + 1), np.float32)
    steps = max(2, int(np.hypot(dx, dy))) if sweep else 1
    for t in np.linspace(0 if sweep else 1, 1, steps):
        sx, sy = int(round(t * dx)) - ox, int(round(t * dy)) - oy
        np.maximum(out[sy : sy + h, sx : sx + w], sprite.alpha, out=out[sy : sy + h, sx : sx + w])
    if softness > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), softness)
    return Patch(sprite.x0 + ox, sprite.y0 + oy, out)


class Scene:
    """A canvas being painted in layers, and every labelled object's still-visible alpha.

    sun: the shadow direction and length per unit of height, in canvas px per px of drawing
    height; shadow_strength: how much a full shadow darkens (0 under overcast skies).
    """

    def __init__(self, ground: np.ndarray, sun: tuple[float, float], shadow_strength: float, hide_objects: bool = False):
        self.canvas = ground  # uint8 (h, w, 3) RGB, painted in place
        self.sun = sun
        self.shadow_strength = shadow_strength
        self.hide_objects = hide_objects
        self.objects: list[PlacedObject] = []
        norm = np.hypot(*sun) or 1.0
        self.light = (-sun[0] / norm, -sun[1] / norm)

    def sprite(self, drawing: Drawing, center: tuple[float, float], size: float, angle: float) -> Sprite:
        sprite = rasterize(drawing, center, size, angle, self.light)
        bx0, by0, bx1, by1 = drawing.bounds()
        height_px = drawing.shadow_height * size / max(bx1 - bx0, by1 - by0)
        offset = (self.sun[0] * height_px, self.sun[1] * height_px)
        sprite.shadow = cast_shadow(sprite, offset, drawing.shadow_sweep, softness=0.4 + 0.05 * np.hypot(*offset))
        return sprite

    def coverage(self, sprite: Sprite) -> float:
        """The largest fraction of any labelled object's visible alpha that `sprite` would cover."""
        worst = 0.0
        for placed in self.objects:
            slices = overlap(placed.visible.x0, placed.visible.y0, placed.visible.alpha.shape, sprite.x0, sprite.y0, sprite.alpha.shape)
            if slices:
                covered = float((placed.visible.alpha[slices[0]] * sprite.alpha[slices[1]]).sum())
                worst = max(worst, covered / max(placed.drawn_area, 1e-6))
        return worst

    def paint(self, sprite: Sprite, class_id: int | None = None) -> None:
        """Composite a sprite (and its shadow); class_id marks a labelled object."""
        for placed in self.objects:  # later layers cover earlier objects
            slices = overlap(placed.visible.x0, placed.visible.y0, placed.visible.alpha.shape, sprite.x0, sprite.y0, sprite.alpha.shape)
            if slices:
                placed.visible.alpha[slices[0]] *= 1 - sprite.alpha[slices[1]]
        if class_id is not None:
            self.objects.append(PlacedObject(class_id, Patch(sprite.x0, sprite.y0, sprite.alpha.copy()), float(sprite.alpha.sum())))
            if self.hide_objects:
                return
        if sprite.shadow is not None and self.shadow_strength > 0:
            shadow = sprite.shadow
            slices = overlap(0, 0, self.canvas.shape, shadow.x0, shadow.y0, shadow.alpha.shape)
            if slices:
                region = self.canvas[slices[0]].astype(np.float32)
                region *= (1 - self.shadow_strength * shadow.alpha[slices[1]])[..., None]
                self.canvas[slices[0]] = region.astype(np.uint8)
        slices = overlap(0, 0, self.canvas.shape, sprite.x0, sprite.y0, sprite.alpha.shape)
        if slices:
            region = self.canvas[slices[0]].astype(np.float32)
            a = sprite.alpha[slices[1]][..., None]
            region = region * (1 - a) + sprite.color[slices[1]]
            self.canvas[slices[0]] = np.clip(region + 0.5, 0, 255).astype(np.uint8)


def random_sun(rng: np.random.Generator) -> tuple[tuple[float, float], float]:
    """Shadow direction x slant (px of shadow per px of height) and shadow strength."""
    azimuth, slant = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.6)
    strength = rng.choice([rng.uniform(0.35, 0.6), rng.uniform(0.1, 0.25)], p=[0.75, 0.25])
    return (float(np.cos(azimuth) * slant), float(np.sin(azimuth) * slant)), float(strength)


# ----------------------------------------------------------------------------------------------
# Ground


def noise(h: int, w: int, rng: np.random.Generator, cell: float) -> np.ndarray:
    """Smooth random field with features about `cell` px across, roughly unit variance."""
    if cell <= 1:
        return rng.standard_normal((h, w), dtype=np.float32)
    grid = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    field_ = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return field_ / (field_[::7, ::7].std() + 1e-6)  # a subsample's spread is close enough, and cheap


def fractal(h: int, w: int, rng: np.random.Generator, cell: float, octaves: int = 4) -> np.ndarray:
    """Octaves of noise from `cell` px down, summed at a resolution their finest one still needs."""
    step = int(np.clip(cell / 2 ** (octaves - 1) / 3, 1, 8))
    small_h, small_w = -(-h // step), -(-w // step)
    total = np.zeros((small_h, small_w), np.float32)
    weight = 1.0
    for _ in range(octaves):
        total += weight * noise(small_h, small_w, rng, max(cell / step, 1.0))
        cell, weight = cell / 2, weight * 0.55
    if step > 1:
        total = cv2.resize(total, (w, h), interpolation=cv2.INTER_LINEAR)
    return total / (total[::7, ::7].std() + 1e-6)


def _colour(field_: np.ndarray, low: RGB, high: RGB) -> np.ndarray:
    """Map a field (about -2..2) between two colours."""
    t = np.clip(field_ * 0.25 + 0.5, 0, 1)[..., None]
    return np.asarray(low, np.float32) * (1 - t) + np.asarray(high, np.float32) * t


def _stripe_coordinate(h: int, w: int, angle: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs * np.cos(angle) + ys * np.sin(angle)


def ground_grass(h: int, w: int, rng: np.random.Generator, detail: float) -> np.ndarray:
    lush, dry = jitter((78, 102, 55), rng, 10), jitter((140, 135, 90), rng, 12)
    image = _colour(fractal(h, w, rng, 90 * detail), shade(lush, 0.75), shade(lush, 1.2))
    dryness = np.clip(fractal(h, w, rng, 160 * detail, 3) - rng.uniform(0.3, 1.5), 0, 1)[..., None]
    image = image * (1 - dryness * 0.7) + np.asarray(dry, np.float32) * dryness * 0.7
    image *= (1 + 0.09 * noise(h, w, rng, 1) + 0.07 * noise(h, w, rng, 2.5 * detail))[..., None]
    if rng.random() < 0.4:  # mowing stripes
        u = _stripe_coordinate(h, w, rng.uniform(0, np.pi))
        image *= (1 + 0.06 * np.sign(np.sin(u * 2 * np.pi / (rng.uniform(40, 90) * detail))))[..., None]
    return image


def ground_asphalt(h: int, w: int, rng: np.random.Generator, detail: float) -> np.ndarray:
    grey = rng.uniform(65, 115)
    image = np.full((h, w, 3), (grey, grey, grey * 1.03), np.float32)
    image *= (1 + 0.08 * fractal(h, w, rng, 120 * detail, 3) + 0.07 * noise(h, w, rng, 1) + 0.04 * noise(h, w, rng, 2))[..., None]
    stains = np.clip(noise(h, w, rng, 40 * detail) - 1.3, 0, 1)[..., None]
    image *= 1 - 0.3 * stains
    for _ in range(int(rng.integers(0, 5))):  # cracks
        points = np.cumsum(rng.normal(0, 12 * detail, (8, 2)), 0) + rng.uniform(0, (w, h))
        cv2.polylines(image, [points.astype(np.int32)], False, (grey * 0.55,) * 3, 1, cv2.LINE_AA)
    if rng.random() < 0.6:  # paint: parking bays or a lane line
        paint = (230, 230, 225) if rng.random() < 0.7 else (230, 195, 50)
        angle = rng.uniform(0, np.pi)
        direction, normal = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        width = max(1, int(rng.uniform(2, 5) * detail))
        centre = rng.uniform(0.2, 0.8, 2) * (w, h)
        if rng.random() < 0.5:
            spacing = rng.uniform(40, 90) * detail
            for k in range(-8, 9):
                a = centre + normal * k * spacing
                cv2.line(image, tuple(np.int32(a)), tuple(np.int32(a + direction * spacing * 2)), paint, width, cv2.LINE_AA)
        else:
            dash = rng.uniform(20, 60) * detail
            for k in range(-12, 13):
                a = centre + direction * k * dash * 2
                cv2.line(image, tuple(np.int32(a)), tuple(np.int32(a + direction * dash)), paint, width, cv2.LINE_AA)
    return image


def ground_roof(h: int, w: int, rng: np.random.Generator, detail: float) -> np.ndarray:
    kind = rng.integers(3)
    angle = rng.uniform(0, np.pi)
    u = _stripe_coordinate(h, w, angle)
    if kind == 0:  # tiles: rows with a shadowed lower lip and staggered joints
        colour = jitter(rng.choice([(165, 80, 55), (90, 85, 85), (120, 70, 50)]), rng, 10)
        row, tile = rng.uniform(6, 14) * detail, rng.uniform(8, 16) * detail
        across = _stripe_coordinate(h, w, angle + np.pi / 2)
        lip = (across / row) % 1.0
        joint = ((u + np.floor(across / row) * tile * 0.5) / tile) % 1.0
        light = 0.8 + 0.3 * lip - 0.25 * (joint < 0.08)
        image = np.asarray(colour, np.float32) * light[..., None]
    elif kind == 1:  # corrugated metal
        colour = jitter(rng.choice([(150, 155, 160), (90, 110, 130), (70, 100, 80), (140, 70, 55)]), rng, 10)
        period = rng.uniform(3, 7) * detail
        image = np.asarray(colour, np.float32) * (1 + 0.14 * np.sin(u * 2 * np.pi / period))[..., None]
        seams = (u % (rng.uniform(60, 140) * detail)) < 1.5
        image[seams] *= 0.7
    else:  # membrane with welded seams
        grey = rng.uniform(150, 210)
        image = np.full((h, w, 3), (grey, grey, grey * 0.98), np.float32)
        image[(u % (rng.uniform(50, 120) * detail)) < 1.2] *= 0.85
    image *= (1 + 0.06 * noise(h, w, rng, 1) + 0.1 * fractal(h, w, rng, 100, 3))[..., None]
    return image


def ground_gravel(h: int, w: int, rng: np.random.Generator, detail: float) -> np.ndarray:
    base = jitter(rng.choice([(150, 140, 120), (125, 122, 118), (170, 155, 130)]), rng, 10)
    stones = noise(h, w, rng, rng.uniform(1.5, 3.5) * detail)
    image = np.asarray(base, np.float32) * (1 + 0.18 * np.tanh(stones * 1.5))[..., None]
    tint = np.stack([noise(h, w, rng, 3 * detail) for _ in range(3)], -1)
    image *= 1 + 0.03 * tint
    image *= (1 + 0.1 * noise(h, w, rng, 1) + 0.1 * fractal(h, w, rng, 150 * detail, 3))[..., None]
    image[stones < -1.6] *= 0.6  # dark gaps between stones
    return image


def ground_dirt(h: int, w: int, rng: np.random.Generator, detail: float) -> np.ndarray:
    image = _colour(fractal(h, w, rng, 80 * detail), jitter((110, 85, 60), rng, 10), jitter((165, 135, 100), rng, 10))
    image *= (1 + 0.08 * noise(h, w, rng, 1) + 0.06 * noise(h, w, rng, 3))[..., None]
    if rng.random() < 0.5:  # tyre tracks
        u = _stripe_coordinate(h, w, rng.uniform(0, np.pi)) + 6 * noise(h, w, rng, 200)
        gauge, offset = rng.uniform(60, 120) * detail, rng.uniform(0, 300)
        for track in (offset, offset + gauge):
            image[np.abs(u - track) < 5 * detail] *= 0.85
    return image


GROUNDS: dict[str, Callable[[int, int, np.random.Generator, float], np.ndarray]] = {
    "grass": ground_grass,
    "asphalt": ground_asphalt,
    "roof": ground_roof,
    "gravel": ground_gravel,
    "dirt": ground_dirt,
}
GROUND_WEIGHTS = {"grass": 0.3, "asphalt": 0.22, "roof": 0.2, "gravel": 0.16, "dirt": 0.12}


def random_ground_kind(rng: np.random.Generator) -> str:
    kinds = list(GROUND_WEIGHTS)
    return kinds[rng.choice(len(kinds), p=np.array(list(GROUND_WEIGHTS.values())) / sum(GROUND_WEIGHTS.values()))]


def make_ground(h: int, w: int, rng: np.random.Generator, detail: float | None = None) -> np.ndarray:
    """A ground texture (uint8 RGB): one surface, often crossed by a second (a road, a roof edge).

    detail scales texture features (bigger = coarser, as seen from lower down).
    """
    detail = float(rng.uniform(0.6, 1.6)) if detail is None else detail
    image = GROUNDS[random_ground_kind(rng)](h, w, rng, detail)
    if rng.random() < 0.5:
        second = GROUNDS[random_ground_kind(rng)](h, w, rng, detail)
        u = _stripe_coordinate(h, w, rng.uniform(0, np.pi)) + 8 * noise(h, w, rng, 150)
        lo = rng.uniform(u.min(), u.max())
        hi = lo + rng.uniform(0.15, 0.5) * (u.max() - u.min())
        edge = rng.choice([1.0, 4.0])  # hard (a roof or kerb) or soft (a worn verge)
        mask = np.clip((u - lo) / edge, 0, 1) * np.clip((hi - u) / edge, 0, 1)
        image = image * (1 - mask[..., None]) + second * mask[..., None]
        if edge == 1.0:  # a darker rim where the surfaces meet
            rim = (np.abs(u - lo) < 2) | (np.abs(u - hi) < 2)
            image[rim] *= 0.7
    return np.clip(image, 0, 255).astype(np.uint8)


# Street ground: what real streets seen from a drone put under an empty box. Flat ground makes an
# empty box look like its surroundings; on a street it may hold a lane marking, a kerb, a drain
# cover, a roof edge or the edge of a shadow, all with as much contrast as a small object.
PAINT_COLOURS: list[RGB] = [(232, 232, 226), (232, 232, 226), (228, 192, 48)]


def make_street_ground(h: int, w: int, rng: np.random.Generator, detail: float | None = None) -> np.ndarray:
    """`make_ground`, then street furniture painted on it (uint8 RGB): a kerb with its gutter and
    lane markings along it, drain and manhole covers, a roof edge with the building's shadow, and
    soft shadows of things out of view. Sizes scale with `detail` as the ground's texture does."""
    detail = float(rng.uniform(0.6, 1.6)) if detail is None else detail
    image = make_ground(h, w, rng, detail).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    centre = rng.uniform(0.25, 0.75, 2) * (w, h)
    reach = 2 * max(h, w)

    def line(offset: float, width: float, colour, dash: float = 0.0) -> None:
        a = centre + across * offset
        if dash <= 0:
            cv2.line(image, tuple(np.int32(a - along * reach)), tuple(np.int32(a + along * reach)), colour, max(1, int(width)), cv2.LINE_AA)
            return
        for k in range(-int(reach / dash / 2), int(reach / dash / 2)):
            start = a + along * k * dash * 2
            cv2.line(image, tuple(np.int32(start)), tuple(np.int32(start + along * dash)), colour, max(1, int(width)), cv2.LINE_AA)

    # The kerb: light kerb stones with joints, a dark gutter on the road side; markings along the road.
    kerb = rng.uniform(4, 9) * detail
    line(0, kerb, jitter((175, 175, 170), rng, 12))
    for k in range(-int(reach / 30), int(reach / 30)):  # joints between kerb stones
        joint = centre + along * k * rng.uniform(25, 35) * detail
        cv2.line(image, tuple(np.int32(joint - across * kerb / 2)), tuple(np.int32(joint + across * kerb / 2)), (110, 110, 105), 1, cv2.LINE_AA)
    line(kerb / 2 + 1.5 * detail, 2 * detail, (45, 45, 45))
    for _ in range(int(rng.integers(1, 4))):
        offset = rng.uniform(30, 220) * detail * rng.choice([-1, 1])
        dash = 0.0 if rng.random() < 0.4 else rng.uniform(20, 60) * detail
        line(offset, rng.uniform(2, 6) * detail, PAINT_COLOURS[rng.integers(len(PAINT_COLOURS))], dash)
    # Drains along the gutter (slotted grates) and manhole covers anywhere (rings and a cross-hatch).
    for _ in range(int(rng.integers(1, 5))):
        size = rng.uniform(8, 30) * detail
        if rng.random() < 0.5:
            spot = centre + along * rng.uniform(-0.6, 0.6) * max(h, w) + across * (kerb / 2 + size * 0.6)
            corners = np.array([spot + along * sx * size / 2 + across * sy * size * 0.35 for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
            cv2.fillPoly(image, [np.int32(corners)], (38, 38, 40), cv2.LINE_AA)
            for t in np.linspace(-0.4, 0.4, 6):
                slot = spot + along * t * size
                cv2.line(image, tuple(np.int32(slot - across * size * 0.25)), tuple(np.int32(slot + across * size * 0.25)), (95, 95, 95), 1, cv2.LINE_AA)
        else:
            spot, metal = rng.uniform(0, 1, 2) * (w, h), jitter((85, 82, 78), rng, 10)
            cv2.circle(image, tuple(np.int32(spot)), int(size / 2), metal, -1, cv2.LINE_AA)
            cv2.circle(image, tuple(np.int32(spot)), int(size / 2), shade(metal, 0.6), max(1, int(size / 12)), cv2.LINE_AA)
            for t in np.linspace(-0.3, 0.3, 4):
                cv2.line(image, tuple(np.int32(spot + (t * size, -size * 0.3))), tuple(np.int32(spot + (t * size, size * 0.3))), shade(metal, 0.75), 1, cv2.LINE_AA)
    # A roof edge: a building's roof on one side of a straight edge, its shadow on the ground beside it.
    if rng.random() < 0.5:
        roof_angle = rng.uniform(0, np.pi)
        u = _stripe_coordinate(h, w, roof_angle)
        edge = rng.uniform(u.min(), u.max())
        roof = ground_roof(h, w, rng, detail)
        inside = (u < edge)[..., None]
        image = np.where(inside, roof, image)
        shadow_width = rng.uniform(10, 60) * detail
        in_shadow = ((u >= edge) & (u < edge + shadow_width))[..., None]
        image = np.where(in_shadow, image * rng.uniform(0.45, 0.65), image)
        image[np.abs(u - edge) < 1.5] *= 0.6  # the parapet's dark rim
    # Soft shadows of trees and buildings out of the picture.
    for _ in range(int(rng.integers(0, 3))):
        blob = blob_points(rng, *rng.uniform(0, 1, 2) * (w, h), rng.uniform(30, 120) * detail, 0.35, 16)
        mask = np.zeros((h, w), np.float32)
        cv2.fillPoly(mask, [np.int32(blob)], 1.0, cv2.LINE_AA)
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(2, 6))
        image *= (1 - rng.uniform(0.3, 0.55) * mask)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Camera effects (applied to a finished RGB image)


def relight(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, white balance and cloud shade drifting over the ground (uint8 in and out)."""
    h, w = image.shape[:2]
    gain = rng.uniform(0.7, 1.25) * np.asarray([rng.uniform(0.92, 1.08), 1.0, rng.uniform(0.9, 1.1)], np.float32)
    out = image.astype(np.float32) * gain
    if rng.random() < 0.3:
        clouds = np.clip(noise(h, w, rng, min(max(h, w) / 3, 700)) * 0.5 + rng.uniform(-0.4, 0.4), 0, 1)
        out *= (1 - rng.uniform(0.2, 0.45) * clouds)[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def sensor(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vignetting, focus or motion blur, and sensor noise (uint8 in and out)."""
    h, w = image.shape[:2]
    ys, xs = np.ogrid[0:h, 0:w]
    radius2 = (((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2).astype(np.float32)
    out = image.astype(np.float32) * (1 - rng.uniform(0, 0.1) * radius2)[..., None]
    blur = rng.random()
    if blur < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.3))
    elif blur < 0.3:  # motion blur along the flight direction
        length = int(rng.integers(3, 8))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1 / length
        kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1), (length, length))
        out = cv2.filter2D(out, -1, kernel / kernel.sum())
    out += sensor_noise(h, w, rng, rng.uniform(1.0, 6.0))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def sensor_noise(h: int, w: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Zero-mean float noise (h, w, 3): per-pixel luminance, coarser colour (as after demosaicing)."""
    luminance = rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    chroma = rng.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32) * (sigma * 0.5)
    return luminance + cv2.resize(chroma, (w, h), interpolation=cv2.INTER_NEAREST)

"""Things drawn as seen from above: the four labelled classes, look-alikes (never labelled, drawn
so a detector has to learn the differences) and ground clutter, each with its random variations."""

from __future__ import annotations

import numpy as np

from cvtriage.synth.shapes import (
    RGB,
    DrawFn,
    Drawing,
    arc_points,
    bezier_points,
    blob_points,
    ellipse_points,
    jitter,
    rect_points,
    rotate_points,
    rounded_rect_points,
    shade,
)

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
    lever = rotate_points(np.array([[-r * 0.3, 0.0], [r * 1.3, 0.0]]), angle)
    drawing.stroke(lever, r * 0.26, black)
    side = rng.choice([-1, 1])
    hose = bezier_points([(0, 0), (r * 0.6, side * r * 1.2), (r * 1.6, side * r * 1.6), (r * rng.uniform(1.8, 2.6), side * r * rng.uniform(0.2, 1.2))])
    hose = rotate_points(hose, angle + rng.uniform(1.0, 2.0))
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


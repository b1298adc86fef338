"""Ground textures: procedural surfaces (grass, asphalt, roofs, gravel, dirt), often crossed by a
second one, and street ground with kerbs, markings, drains, roof edges and shadows painted on."""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from cvtriage.synth.shapes import RGB, blob_points, jitter, shade


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

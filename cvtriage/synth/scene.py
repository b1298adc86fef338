"""Synthetic aerial scenes: a canvas painted in layers (procedural ground from `synth.ground`, then
things drawn as seen from above from `synth.objects`, with their shadows) that remembers which
pixels of every labelled object stay visible after later layers cover them.

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

from dataclasses import dataclass

import cv2
import numpy as np

from cvtriage.synth.shapes import Drawing, rotate_points

# Alpha above which a pixel counts as part of an object when its box is measured.
VISIBLE_ALPHA = 0.25
# Thinner strokes than this (output pixels) are widened: a real sensor still shows a bright thin
# rod as a faint line rather than losing it.
MIN_STROKE_PX = 0.7


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
        placed = rotate_points((points - mid) * scale, angle) + center
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

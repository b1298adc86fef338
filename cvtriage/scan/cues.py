"""Two cues of a proposal scan that need no model (cvtriage.scan.proposals): what moves once the
camera's own motion is taken out, and what stands out from the ground around it.

Both measure a difference between two BGR images in Lab colour (contrast counts lightness half:
a cloud's shade or a sunlit patch changes lightness, an object its colour too; a moving object
changes the light where it goes, so motion counts it whole), and turn the pixels beyond a
threshold into blobs: joined across a few pixels (an object's parts, a ladder's two
rails, are one blob), kept when the blob's longer side is an object's size and it is not a line.
A blob's strength says how far it stands out: 1 - threshold / its highest difference. What
stands out only as shade (a shadow, a cloud's) is ground, not an object.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from cvtriage.config import ProposalsConfig
from cvtriage.logs import quieted

# How much lightness counts against colour in the contrast with the ground (see the docstring).
CONTRAST_LIGHTNESS = 0.5
# Pixels of one object closer than this are one blob (the dilation's size).
JOIN_PX = 5
# Differences are measured on images blurred this much (px): resampling and compression noise
# are not motion.
NOISE_SIGMA = 1.0
# The ground's median is measured on the frame shrunk this many times (a large median is costly).
BACKGROUND_SHRINK = 4
# Shade: darker than the ground (every channel below this ratio of it), by one ratio in every
# channel (their spread within this share of their mean); a blob is shade when most of it is.
SHADE_MAX_RATIO, SHADE_SPREAD, SHADE_SHARE = 0.9, 0.12, 0.5
# Ultralytics' global motion compensation: sparse optical flow on frames halved.
GMC_METHOD, GMC_DOWNSCALE = "sparseOptFlow", 2


def lab_distance(a: np.ndarray, b: np.ndarray, lightness: float = 1.0) -> np.ndarray:
    """Per pixel, the distance of two Lab images (float32), lightness counted `lightness` times."""
    difference = a.astype(np.float32) - b.astype(np.float32)
    difference[..., 0] *= lightness
    return np.sqrt((difference**2).sum(axis=2))


def blobs(
    distance: np.ndarray, threshold: float, cues: ProposalsConfig, shade: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and strengths (N,) of the blobs where `distance` exceeds `threshold`; with
    `shade` (per pixel: the image is the ground darkened, see `in_shade`), not those that are."""
    mask = (distance > threshold).astype(np.uint8)
    joined = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (JOIN_PX, JOIN_PX)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    flat_labels, inside = labels.ravel(), mask.ravel() > 0
    peaks = np.zeros(count, np.float32)
    np.maximum.at(peaks, flat_labels, np.where(inside, distance.ravel(), 0).astype(np.float32))
    shaded = np.zeros(count, bool)
    if shade is not None:  # most of the blob's pixels beyond the threshold
        pixels = np.bincount(flat_labels[inside], minlength=count)
        shaded = np.bincount(flat_labels[inside], weights=shade.ravel()[inside], minlength=count) > SHADE_SHARE * pixels
    grown = JOIN_PX // 2  # the dilation's growth on every side
    boxes, strengths = [], []
    for label in range(1, count):
        x, y, width, height, _ = stats[label]
        long, short = max(width, height) - 2 * grown, max(min(width, height) - 2 * grown, 1)
        if not cues.min_side <= long <= cues.max_side or long > cues.max_aspect * short or peaks[label] <= threshold:
            continue
        if shaded[label]:
            continue
        boxes.append((x + grown, y + grown, x + width - grown, y + height - grown))
        strengths.append(1 - threshold / peaks[label])
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(strengths, np.float32)


def in_shade(image: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """Per pixel, whether the image is the ground in shade: darker by one ratio in every channel
    (a shadow dims the light, it does not change the colour), where an object, even a dark grey
    one on grey ground, differs in colour or is brighter."""
    ratio = (image.astype(np.float32) + 1) / (ground.astype(np.float32) + 1)
    darker = ratio.max(axis=2) < SHADE_MAX_RATIO
    return darker & (ratio.max(axis=2) - ratio.min(axis=2) < SHADE_SPREAD * ratio.mean(axis=2))


def contrast_boxes(image: np.ndarray, cues: ProposalsConfig) -> tuple[np.ndarray, np.ndarray]:
    """What stands out from the ground: the image against its median over `background_px` (an
    object smaller than half that window does not move the median), in Lab."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(width // BACKGROUND_SHRINK, 1), max(height // BACKGROUND_SHRINK, 1)), interpolation=cv2.INTER_AREA)
    window = max(3, int(cues.background_px / BACKGROUND_SHRINK) | 1)
    ground = np.stack([cv2.medianBlur(np.ascontiguousarray(small[..., channel]), window) for channel in range(3)], axis=2)
    ground = cv2.resize(ground, (width, height), interpolation=cv2.INTER_LINEAR)
    smooth = cv2.GaussianBlur(image, (0, 0), NOISE_SIGMA)
    distance = lab_distance(cv2.cvtColor(smooth, cv2.COLOR_BGR2LAB), cv2.cvtColor(ground, cv2.COLOR_BGR2LAB), CONTRAST_LIGHTNESS)
    return blobs(distance, cues.contrast_threshold, cues, in_shade(smooth, ground))


def camera_motion(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 affine warp taking `source`'s pixels to `target`'s (Ultralytics' GMC)."""
    from ultralytics.trackers.utils.gmc import GMC

    gmc = GMC(GMC_METHOD, downscale=GMC_DOWNSCALE)
    with quieted("ultralytics", logging.ERROR):  # "not enough matching points" on a featureless frame
        gmc.apply(source)
        return gmc.apply(target)


def motion_boxes(image: np.ndarray, neighbours: list[np.ndarray], cues: ProposalsConfig) -> tuple[np.ndarray, np.ndarray]:
    """What moves: `image` against each of its neighbours (frames a moment before and after)
    warped onto it, keeping what differs from all of them (three-frame differencing: where an
    object was a moment ago differs from one neighbour only)."""
    height, width = image.shape[:2]
    here = cv2.cvtColor(cv2.GaussianBlur(image, (0, 0), NOISE_SIGMA), cv2.COLOR_BGR2LAB)
    distance = None
    for other in neighbours:
        warp = camera_motion(other, image)
        warped = cv2.warpAffine(cv2.GaussianBlur(other, (0, 0), NOISE_SIGMA), warp, (width, height), flags=cv2.INTER_LINEAR)
        covered = cv2.warpAffine(np.full((height, width), 255, np.uint8), warp, (width, height), flags=cv2.INTER_NEAREST)
        covered = cv2.erode(covered, np.ones((3, 3), np.uint8)) > 0  # the warp's edge blends with the border
        moved = np.where(covered, lab_distance(here, cv2.cvtColor(warped, cv2.COLOR_BGR2LAB)), 0)
        distance = moved if distance is None else np.minimum(distance, moved)
    return blobs(distance, cues.motion_threshold, cues)

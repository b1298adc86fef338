"""Camera effects, applied to a finished RGB image: exposure, white balance and cloud shade, then
vignetting, blur and sensor noise."""

from __future__ import annotations

import cv2
import numpy as np

from cvtriage.synth.ground import noise


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

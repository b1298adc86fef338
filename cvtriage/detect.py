"""Detections: batched (and tiled) inference of sampled frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FrameDetections:
    """The model's boxes on one frame, in the frame's own pixel coordinates."""

    frame_index: int
    time_s: float
    boxes_xyxy: np.ndarray  # (N, 4) float32, pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

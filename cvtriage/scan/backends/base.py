"""What the detector asks of a model backend: run a list of images at an input size and give back
each image's boxes, after non-maximum suppression.

A backend is an adapter at the edge, around one way of running a model (Ultralytics' `predict`,
OpenVINO's runtime directly). It does its own preprocessing (letterbox, normalisation, the copy
to its device), so one that works on a GPU may letterbox there, or stack same-size frames into
one batch; and it says what the detector may plan for: whether it takes any input size or pads
every input to a fixed one, and whether one call should get many images or one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    """What a backend keeps of the model's raw output (its NMS settings)."""

    conf: float
    iou: float
    classes: list[int] | None  # class ids to keep (None: all)
    agnostic: bool  # NMS across classes
    max_det: int  # boxes per image at most


class DetectorBackend(ABC):
    """Runs a detection model on lists of BGR images (see the module's docstring).

    device: where it runs ("cpu", or a CUDA index);
    any_size: the model takes any input size (each image letterboxed to imgsz on the stride grid);
      otherwise every input is padded to one fixed size;
    fixed_size: that fixed side where the model says it (None: any size, or not known);
    batches: one call should get all the images there are; otherwise one image a call.
    """

    device: str
    any_size: bool
    fixed_size: int | None
    batches: bool

    @abstractmethod
    def predict(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        """Per image (BGR uint8, of any size), its boxes as an (N, 6) float32 array: x1 y1 x2 y2
        in the image's pixels, score, class id."""

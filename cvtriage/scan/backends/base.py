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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cvtriage.scan.features import BoxFeatureTap


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
    # The hooks that give each kept box the detector's own features (cvtriage.scan.features);
    # None where the model has no PyTorch Detect head to hook (an OpenVINO export).
    features: "BoxFeatureTap | None" = None

    @abstractmethod
    def predict(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        """Per image (BGR uint8, of any size), its boxes as an (N, 6) float32 array: x1 y1 x2 y2
        in the image's pixels, score, class id; with `features`, (N, 6 + D): each box's features
        follow (see `with_features`)."""

    def with_features(self, images: list[np.ndarray], boxes: list) -> list[np.ndarray]:
        """`boxes` (per image, (N, 6) rows from the model call just made, `features.start()` before
        it) with each box's features appended, or as they are without a tap."""
        rows = [np.asarray(found, np.float32).reshape(-1, 6) for found in boxes]
        if self.features is None:
            return rows
        features = self.features.take([found[:, :4] for found in rows], [image.shape[:2] for image in images])
        # Rounded to half precision, as the detection log keeps them: a resumed scan's are the same.
        return [np.concatenate([found, vectors.astype(np.float16)], 1) for found, vectors in zip(rows, features)]

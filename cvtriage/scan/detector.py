"""Detections: batched (and tiled) inference of sampled frames, over a model backend.

The detector plans what the model sees of a frame (the whole frame at a larger input, or tiles:
cvtriage.scan.tiling; a refinement crop: cvtriage.scan.crops) and turns the boxes the backend
finds back into the frame's pixels. On a GPU every tile of every frame in a batch goes to the
backend in ONE call; on the CPU, where batches cost more per image, one tile per call, unless the
backend runs them side by side (an OpenVINO export: cvtriage.scan.backends.openvino).
"""

from __future__ import annotations

import numpy as np

from cvtriage.boxes import centred_in
from cvtriage.config import ScanConfig
from cvtriage.scan.backends import DetectorBackend, Thresholds, backend_for
from cvtriage.scan.crops import Crop, Letterbox, boxes_in_frame, crop_around, crop_input
from cvtriage.scan.tiling import (
    input_pixels,
    merge_across_tiles,
    tile_grid,
    tile_windows,
    whole_frame_input,
)
from cvtriage.types import FrameDetections

# Detections down to this share of `conf` are kept, so the scan can tell an object that left from
# one whose score dipped below the threshold for a frame (events use only those at `conf`).
WEAK_CONF_SHARE = 0.8
MAX_DETECTIONS = 300


def detection_thresholds(settings: ScanConfig, class_ids: list[int] | None) -> Thresholds:
    """What the scan keeps of the model's output: down to WEAK_CONF_SHARE x conf."""
    return Thresholds(settings.conf * WEAK_CONF_SHARE, settings.iou, class_ids, settings.agnostic_nms, MAX_DETECTIONS)


class Detector:
    """Runs a model backend on batches of frames of one size (on a GPU, all tiles of all frames in one call)."""

    def __init__(self, backend: DetectorBackend, settings: ScanConfig, width: int, height: int):
        self.backend = backend
        self.settings = settings
        any_size = backend.any_size
        # A model of a fixed input size sees every input padded to that size, whatever imgsz says:
        # plan the tiles for that size (an 864-px export takes a 1280x720 frame whole, not in 2 tiles).
        imgsz = settings.imgsz if any_size else backend.fixed_size or settings.imgsz
        whole = whole_frame_input(width, height, imgsz) if settings.tile == "auto" else None
        if whole is not None and any_size:
            self.grid, self.input_size = (1, 1), whole
        else:
            self.grid = tile_grid(width, height, imgsz, settings.tile, settings.tile_overlap)
            self.input_size = imgsz
        self.tiled = self.grid != (1, 1)
        self.windows = tile_windows(width, height, *self.grid, settings.tile_overlap) if self.tiled else []
        # SAHI's "standard prediction": the whole frame too, for objects larger than a tile.
        if not self.tiled or settings.tile_full_frame:
            self.windows = [(0, 0, width, height)] + self.windows
        # Refinement crops are pieces of the whole frame's input: a model of a fixed input size
        # would pad each to its full size and gain nothing, and tiles are not cropped (yet).
        self.fixed_input = not any_size  # every input padded to a square of input_size
        self.letterbox = None
        if settings.refine_crop and any_size and not self.tiled:
            self.letterbox = Letterbox.of_frame(width, height, self.input_size)
        self.pixels_inferred = 0  # model input pixels so far (letterboxed), whole frames and crops
        self.pixels_per_frame = sum(
            input_pixels(x1 - x0, y1 - y0, self.input_size, self.fixed_input) for x0, y0, x1, y1 in self.windows
        )

    @classmethod
    def for_model(
        cls, model, settings: ScanConfig, class_ids: list[int] | None, device: str, width: int, height: int,
        dense: bool = False,
    ) -> "Detector":  # fmt: skip
        """The detector of an Ultralytics model (its predictor set up) over the backend that runs
        it best here, for a dense scan or not (cvtriage.scan.backends.backend_for)."""
        one_per_call = device == "cpu" and settings.batch == "auto"  # see models.inference_batch
        backend = backend_for(model, device, detection_thresholds(settings, class_ids), one_per_call, dense)
        return cls(backend, settings, width, height)

    def crop_for(self, boxes: np.ndarray) -> Crop | None:
        """The crop of the frame's input that shows `boxes`, or None: infer the whole frame."""
        return crop_around(boxes, self.letterbox) if self.letterbox is not None else None

    def region_for(self, boxes: np.ndarray) -> tuple[int, int, int, int] | None:
        """The region `crop_for(boxes)` answers for (see cvtriage.scan.refine.refine_gap)."""
        crop = self.crop_for(boxes)
        return crop.region if crop is not None else None

    @property
    def images_per_frame(self) -> int:
        return len(self.windows)

    def describe_tiling(self) -> str:
        if not self.tiled:
            return "off"
        rows, cols = self.grid
        return f"{rows}x{cols}" + (" + full frame" if self.settings.tile_full_frame else "")

    def detect(self, frames: list[tuple[int, float, np.ndarray]], crop: Crop | None = None) -> list[FrameDetections]:
        """Detections for each (frame_index, time_s, BGR image), down to WEAK_CONF_SHARE x conf (see
        cvtriage.scan.refine.changed_classes). With `crop`, only its window is inferred, and only
        the objects of its region are kept."""
        if not frames:
            return []
        if crop is not None:
            return [self._detect_crop(index, time_s, image, crop) for index, time_s, image in frames]
        windows = self.windows
        tiles = [np.ascontiguousarray(image[y0:y1, x0:x1]) for _, _, image in frames for x0, y0, x1, y1 in windows]
        self.pixels_inferred += len(frames) * self.pixels_per_frame
        found = self._predict(tiles, self.input_size)
        per_frame = len(windows)
        detections = []
        for number, (frame_index, time_s, _) in enumerate(frames):
            frame_found = found[number * per_frame : (number + 1) * per_frame]
            rows = np.concatenate([_in_frame(rows, x0, y0) for rows, (x0, y0, _, _) in zip(frame_found, windows)])
            if per_frame > 1:
                sources = np.concatenate([np.full(len(rows), source) for source, rows in enumerate(frame_found)])
                merged_boxes, *_, kept = merge_across_tiles(
                    rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64), sources, agnostic=self.settings.agnostic_nms
                )  # the merged box's score, class and features are its best's
                rows = np.concatenate([merged_boxes, rows[kept, 4:]], 1)
            # The backend's (cvtriage.scan.features), in half precision: a long flight keeps them all.
            features = rows[:, 6:].astype(np.float16) if rows.shape[1] > 6 else None
            detections.append(FrameDetections(frame_index, time_s, rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64),
                                              features=features))  # fmt: skip
        return detections

    def _detect_crop(self, frame_index: int, time_s: float, image: np.ndarray, crop: Crop) -> FrameDetections:
        """One frame's detections within a refinement crop (cvtriage.scan.crops): the objects
        centred in `crop.region` are kept."""
        x0, y0, x1, y1 = crop.window
        self.pixels_inferred += (x1 - x0) * (y1 - y0)
        [rows] = self._predict([crop_input(image, crop, self.input_size)], crop.imgsz)
        boxes = boxes_in_frame(rows[:, :4], crop, self.letterbox)
        keep = centred_in(boxes, crop.region)
        return FrameDetections(
            frame_index, time_s, boxes[keep], rows[keep, 4], rows[keep, 5].astype(np.int64), crop.region
        )

    def _predict(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        """Per image, an (N, 6 [+ D]) float32 array: x1 y1 x2 y2 (image pixels), score, class [, the
        box's features where the backend has them: base.DetectorBackend.predict]."""
        chunk = max(len(images), 1) if self.backend.batches else 1
        return [
            rows
            for start in range(0, len(images), chunk)
            for rows in self.backend.predict(images[start : start + chunk], imgsz)
        ]


def _in_frame(rows: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """A tile's rows (base.DetectorBackend.predict) with their boxes moved into the frame's pixels."""
    moved = rows.copy()
    moved[:, :4] += np.array([x0, y0, x0, y0], np.float32)
    return moved

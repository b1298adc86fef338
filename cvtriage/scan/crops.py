"""Refinement crops: a piece of a frame's model input, inferred instead of the whole frame.

A bisection between two frames (cvtriage.scan.refine) asks about a few objects only. Where the
model accepts any input size, the detector infers just a window of the frame's letterboxed input
around them: on the stride grid, at the scale of the whole frame, so the model sees exactly the
pixels it sees there in the whole frame, and answers for the objects centred in the window's
region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Input sizes are multiples of the model's largest stride.
STRIDE = 32
# Refinement crops (Detector.crop_for), in model pixels at the scan's scale: the objects' boxes
# grow by CROP_MARGIN (their motion between the two frames compared, box jitter) into the region
# the crop answers for, and the window inferred adds CROP_CONTEXT more, so an object at the
# region's edge is seen whole and with its surroundings.
CROP_MARGIN = 32
CROP_CONTEXT = 96
# A crop larger than this share of the frame saves too little: the whole frame is inferred.
CROP_MAX_SHARE = 0.5
# Crops are squares of these sides (input pixels): an OpenVINO export with dynamic shapes prepares
# itself anew for every new input shape (~100 ms here, more than a crop's inference), so a few
# sizes are used over and over.
CROP_SIDES = (256, 320, 384, 448)


@dataclass(frozen=True)
class Letterbox:
    """Where a frame lands in the model's input when inferred whole (Ultralytics' LetterBox):
    frame pixel (x, y) is input pixel (x * ratio + left, y * ratio + top) of a width x height input."""

    ratio: float
    left: int
    top: int
    width: int
    height: int
    frame_width: int
    frame_height: int

    @classmethod
    def of_frame(cls, width: int, height: int, imgsz: int) -> "Letterbox":
        from ultralytics.data.augment import LetterBox

        params = LetterBox((imgsz, imgsz), auto=True, stride=STRIDE).get_params({"img": np.empty((height, width, 0))})
        new_width, new_height = params["new_unpad"]
        return cls(
            params["ratio"][0], params["left"], params["top"], new_width + params["left"] + params["right"],
            new_height + params["top"] + params["bottom"], width, height,
        )  # fmt: skip


@dataclass(frozen=True)
class Crop:
    """A refinement crop: `window` (x0, y0, x1, y1) is a piece of the whole frame's model input
    (see Letterbox), its sides and corner on the model's stride grid, so the model sees exactly
    the pixels, at the same scale and grid phase, that it sees there in the whole frame; objects
    whose box centre lies in `region` (frame pixels) are the ones it answers for."""

    window: tuple[int, int, int, int]
    region: tuple[int, int, int, int]

    @property
    def imgsz(self) -> int:
        x0, y0, x1, y1 = self.window
        return max(x1 - x0, y1 - y0)


def crop_around(boxes: np.ndarray, letterbox: Letterbox) -> Crop | None:
    """The crop around `boxes` (frame pixels), or None when it would cover most of the frame."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return None
    lb = letterbox
    offset = np.array([lb.left, lb.top])
    low = boxes[:, :2].min(0) * lb.ratio + offset - CROP_MARGIN
    high = boxes[:, 2:].max(0) * lb.ratio + offset + CROP_MARGIN
    limits = np.array([lb.width, lb.height])
    start = np.clip(np.floor((low - CROP_CONTEXT) / STRIDE) * STRIDE, 0, limits).astype(int)
    stop = np.clip(np.ceil((high + CROP_CONTEXT) / STRIDE) * STRIDE, 0, limits).astype(int)
    side = next((side for side in CROP_SIDES if side >= (stop - start).max()), None)
    if side is None:
        return None
    # Grown to the square (as far as the input reaches), on the grid, still covering start-stop.
    size = np.minimum(side, limits)
    start = np.clip(start - (size - (stop - start)) // 2 // STRIDE * STRIDE, 0, limits - size)
    stop = start + size
    if np.prod(stop - start) > CROP_MAX_SHARE * lb.width * lb.height:
        return None
    frame_low = np.maximum(np.floor((low - offset) / lb.ratio), 0).astype(int)
    frame_high = np.minimum(np.ceil((high - offset) / lb.ratio), [lb.frame_width, lb.frame_height]).astype(int)
    return Crop((*map(int, start), *map(int, stop)), (*map(int, frame_low), *map(int, frame_high)))


def crop_input(image: np.ndarray, crop: Crop, imgsz: int) -> np.ndarray:
    """The piece `crop.window` of the frame's letterboxed model input at `imgsz` (BGR uint8): what
    the model is given for the crop, as it is (its sides are multiples of the stride: no resize,
    no padding)."""
    from ultralytics.data.augment import LetterBox

    x0, y0, x1, y1 = crop.window
    whole = LetterBox((imgsz, imgsz), auto=True, stride=STRIDE)(image=image)
    return np.ascontiguousarray(whole[y0:y1, x0:x1])


def boxes_in_frame(boxes: np.ndarray, crop: Crop, letterbox: Letterbox) -> np.ndarray:
    """Boxes (N, 4) found in the crop's input, in frame pixels (clipped to the frame)."""
    x0, y0, _, _ = crop.window
    shift = np.array([x0 - letterbox.left, y0 - letterbox.top] * 2, np.float32)
    frame = np.array([letterbox.frame_width, letterbox.frame_height] * 2, np.float32)
    return np.clip((boxes + shift) / letterbox.ratio, 0, frame)

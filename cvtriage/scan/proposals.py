"""Proposals without the class (cold start, `cvtriage scan --propose`): objects that no model
knows yet, each an `object` event for the review queue, where a reviewer names it (class:<name>)
and the next turn of the loop teaches the detector that class.

Three cues look at every sampled frame (cvtriage.scan.cues):
- detector: the scan's model at a low confidence, NMS across its classes, each box an object
  whatever class the model gave it (a COCO model calls a ladder seen from above a "sports ball");
- motion: the frames `motion_seconds` before and after, warped onto the frame after compensating
  the camera's motion, differ from it where something moves;
- contrast: what stands out from the ground around it.
Their boxes are merged into one per object, which keeps the cues that found it: a proposal's
class id is the bitmask of its cues (CUES), and every id is the class `object`, so the scan's own
tracker follows an object whichever cues see it frame to frame (it matches classes by name), and
its event lists every cue that proposed it along its track (`with_cues`). The detection log keeps
the ids, so a resumed scan gets the same cues.

A proposal scores `conf + (1 - conf) x strength` (a detector box's strength is its confidence
above `detector_conf`, a blob's how far it stands out beyond its threshold): every proposal
passes the scan's `conf`, and the review queue takes the weakest as the most uncertain.
Refinement is off: cues flicker between frames where a model's classes would not, and a
proposal only needs finding, not timing to the frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cvtriage.boxes import iou_matrix
from cvtriage.config import ScanConfig
from cvtriage.decision_tags import PROPOSAL_CLASS
from cvtriage.scan.crops import Crop
from cvtriage.scan.cues import contrast_boxes, motion_boxes
from cvtriage.scan.detector import Detector
from cvtriage.scan.frames import FrameSource
from cvtriage.types import Event, FrameDetections

# Each cue's bit in a proposal's class id, in the order their boxes are preferred when cues
# overlap: a detector's box is the tightest, a motion blob the loosest (it smears along the motion).
CUES = {"detector": 1, "contrast": 4, "motion": 2}
PROPOSAL_CLASSES = {mask: PROPOSAL_CLASS for mask in range(1 << len(CUES))}
# Boxes of two cues overlapping this much are one object.
SAME_OBJECT_IOU = 0.3


def cue_names(mask: int) -> tuple[str, ...]:
    """The cues of a proposal's class id, in CUES' order."""
    return tuple(name for name, bit in CUES.items() if mask & bit)


def merge_cues(found: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One box per object from each cue's (boxes (N, 4), strengths (N,)): (boxes, strengths, cue
    masks). Greedy, the preferred cue's box first (CUES' order), then the stronger: it absorbs the
    boxes of other cues overlapping it by SAME_OBJECT_IOU, and their cues and strength."""
    rows = [(rank, -float(strength), CUES[name], box)
            for rank, name in enumerate(CUES) if name in found
            for box, strength in zip(*found[name])]  # fmt: skip
    rows.sort(key=lambda row: (row[0], row[1]))
    boxes = np.array([row[3] for row in rows], np.float32).reshape(-1, 4)
    strengths = np.array([-row[1] for row in rows], np.float32)
    masks = np.array([row[2] for row in rows], np.int64)
    overlaps = iou_matrix(boxes, boxes) >= SAME_OBJECT_IOU
    absorbed = np.zeros(len(rows), bool)
    kept: list[tuple[np.ndarray, float, int]] = []
    for i in range(len(rows)):
        if absorbed[i]:
            continue
        group = np.flatnonzero(overlaps[i] & ~absorbed & ((masks != masks[i]) | (np.arange(len(rows)) == i)))
        absorbed[group] = True
        kept.append((boxes[i], float(strengths[group].max()), int(np.bitwise_or.reduce(masks[group]))))
    if not kept:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return (np.array([k[0] for k in kept], np.float32), np.array([k[1] for k in kept], np.float32),
            np.array([k[2] for k in kept], np.int64))  # fmt: skip


class ProposalDetector:
    """The scan's detector for a proposal scan (see the module's docstring): the same interface
    as cvtriage.scan.detector.Detector, whole frames only."""

    def __init__(self, boxes: Detector | None, settings: ScanConfig, source: FrameSource):
        self.boxes = boxes
        self.settings = settings
        self.cues = settings.proposals
        video = source.info
        self.scale = min(1.0, self.cues.work_side / max(video.width, video.height))
        # Motion needs the moments around a frame: a video's, not an image folder's.
        self.offset = max(1, round(self.cues.motion_seconds * video.fps)) if self.cues.motion and video.kind == "video" else 0
        step_cache = 2 * self.offset + 1  # reading back from one sample's `after` to the next one's `before`
        self.reader = source.reader(cache_frames=step_cache) if self.offset else None
        self.video = video
        self.input_size = boxes.input_size if boxes is not None else self.cues.work_side
        self.pixels_per_frame = boxes.pixels_per_frame if boxes is not None else 0
        self.pixels_inferred = 0

    @classmethod
    def for_model(cls, model, settings: ScanConfig, device: str, source: FrameSource) -> "ProposalDetector":
        boxes = None
        if settings.proposals.detector:
            detector_settings = settings.model_copy(update={"conf": settings.proposals.detector_conf, "agnostic_nms": True})
            boxes = Detector.for_model(model, detector_settings, None, device, source.info.width, source.info.height)
        return cls(boxes, settings, source)

    def crop_for(self, boxes: np.ndarray) -> Crop | None:
        return None

    def region_for(self, boxes: np.ndarray) -> None:
        return None

    def describe_tiling(self) -> str:
        cues = [name for name in CUES if getattr(self.cues, name)]
        tiling = self.boxes.describe_tiling() if self.boxes is not None else "off"
        return f"{tiling}; proposals by {', '.join(cues)}"

    def detect(self, frames: list[tuple[int, float, np.ndarray]], crop: Crop | None = None) -> list[FrameDetections]:
        """Each frame's proposals, class ids their cue masks (whole frames: `crop` is never given)."""
        found_by_model = self.boxes.detect(frames) if self.boxes is not None else [None] * len(frames)
        if self.boxes is not None:
            self.pixels_inferred = self.boxes.pixels_inferred
        return [self._propose(index, time_s, image, by_model) for (index, time_s, image), by_model in zip(frames, found_by_model)]

    def _propose(self, index: int, time_s: float, image: np.ndarray, by_model: FrameDetections | None) -> FrameDetections:
        floor = self.cues.detector_conf
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if by_model is not None:
            sides = np.max(by_model.boxes_xyxy[:, 2:] - by_model.boxes_xyxy[:, :2], axis=1) * self.scale  # at work scale
            keep = (by_model.scores >= floor) & (sides >= self.cues.min_side) & (sides <= self.cues.max_side)
            found["detector"] = (by_model.boxes_xyxy[keep], (by_model.scores[keep] - floor) / (1 - floor))
        work = self._at_work_scale(image)
        if self.cues.contrast:
            found["contrast"] = self._in_frame(contrast_boxes(work, self.cues))
        if self.offset:
            neighbours = [self._at_work_scale(self.reader.read(other)) for other in (index - self.offset, index + self.offset)
                          if 0 <= other < self.video.frame_count]  # fmt: skip
            neighbours = [frame for frame in neighbours if frame is not None]
            if neighbours:
                found["motion"] = self._in_frame(motion_boxes(work, neighbours, self.cues))
        boxes, strengths, masks = merge_cues(found)
        conf = self.settings.conf
        scores = (conf + (1 - conf) * np.clip(strengths, 0, 0.999)).astype(np.float32)
        return FrameDetections(index, time_s, boxes, scores, masks)

    def _at_work_scale(self, image: np.ndarray | None) -> np.ndarray | None:
        import cv2

        if image is None or self.scale == 1.0:
            return image
        height, width = image.shape[:2]
        return cv2.resize(image, (round(width * self.scale), round(height * self.scale)), interpolation=cv2.INTER_AREA)

    def _in_frame(self, found: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        boxes, strengths = found
        return boxes / self.scale, strengths

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def with_cues(events: list[Event], frames: dict[int, FrameDetections]) -> list[Event]:
    """The events of a proposal scan, each with every cue that proposed it along its track (the
    class ids of its boxes), as one class `object` (id 0)."""
    named = []
    for event in events:
        mask = 0
        for point in event.track:
            frame = frames[point.frame]
            same = np.flatnonzero(np.abs(frame.boxes_xyxy - np.asarray(point.box, np.float32)).max(axis=1) < 1e-2)
            mask |= int(np.bitwise_or.reduce(frame.class_ids[same])) if len(same) else 0
        named.append(dataclasses.replace(event, class_id=0, class_name=PROPOSAL_CLASS, cues=cue_names(mask or event.class_id)))
    return named

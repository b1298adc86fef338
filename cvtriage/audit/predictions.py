"""Predictions: a detector run over a FiftyOne dataset's images in batches, stored as fo.Detections.

Ultralytics is called directly on batches of decoded images (not through FiftyOne's model zoo
wrappers), so batching, device and thresholds are the ones the rest of cvtriage uses. Boxes are
kept down to a low confidence: the audit needs the model's doubts, not only its detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cvtriage.boxes import xyxy_to_xywh
from cvtriage.labels.yolo import UNDECODABLE_IMAGE, DataProblem
from cvtriage.models import class_names
from cvtriage.progress import ProgressCallback, no_progress

PREDICTIONS = "predictions"
# Samples written to the database at once: fewer round trips, bounded memory.
WRITE_EVERY = 256


@dataclass(frozen=True)
class PredictOptions:
    conf: float
    iou: float
    imgsz: int
    batch: int
    device: str


def predict_into(
    samples, model, class_ids: list[int] | None, options: PredictOptions, field: str = PREDICTIONS,
    on_progress: ProgressCallback = no_progress, names: dict[int, str] | None = None,
) -> list[DataProblem]:
    """Store the model's boxes for every sample in `field` (fo.Detections with confidence) and
    each image's size in `metadata`; `class_ids`: the model's classes to keep (None: all);
    `names`: the label to store for each class id (None: the model's own names).
    Returns the images that could not be decoded (their field is None).
    on_progress(images done, all images, "Predicting") is called after each batch."""
    import cv2
    import fiftyone as fo

    names = names or class_names(model)
    ids, filepaths = samples.values(["id", "filepath"])
    problems: list[DataProblem] = []
    pending_detections, pending_metadata = {}, {}

    def flush():
        samples.set_values(field, pending_detections, key_field="id")
        if pending_metadata:
            samples.set_values("metadata", pending_metadata, key_field="id")
        pending_detections.clear()
        pending_metadata.clear()

    on_progress(0, len(ids), "Predicting")
    for start in range(0, len(ids), options.batch):
        batch_ids, images = [], []
        for sample_id, filepath in zip(ids[start : start + options.batch], filepaths[start : start + options.batch]):
            image = cv2.imread(filepath)
            if image is None:
                problems.append(DataProblem(Path(filepath), UNDECODABLE_IMAGE))
                pending_detections[sample_id] = None
                continue
            batch_ids.append(sample_id)
            images.append(image)
        if images:
            results = model.predict(
                images, conf=options.conf, iou=options.iou, imgsz=options.imgsz, device=options.device,
                classes=class_ids, max_det=300, verbose=False,
            )
            for sample_id, image, result in zip(batch_ids, images, results):
                pending_detections[sample_id] = to_detections(result, names)
                height, width = image.shape[:2]
                pending_metadata[sample_id] = fo.ImageMetadata(width=width, height=height, num_channels=3)
        if len(pending_detections) >= WRITE_EVERY:
            flush()
        on_progress(min(start + options.batch, len(ids)), len(ids), "Predicting")
    flush()
    return problems


def to_detections(result, names: dict[int, str]):
    """An Ultralytics result as fo.Detections: relative [x, y, w, h] boxes with confidence."""
    import fiftyone as fo

    boxes = result.boxes
    detections = [
        fo.Detection(label=names[int(class_id)], bounding_box=box, confidence=confidence)
        for box, confidence, class_id in zip(
            xyxy_to_xywh(boxes.xyxyn.tolist()).tolist(), boxes.conf.tolist(), boxes.cls.tolist()
        )
    ]
    return fo.Detections(detections=detections)

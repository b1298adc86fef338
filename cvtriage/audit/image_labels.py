"""One image's labels and predictions as arrays, read from a FiftyOne collection: what the audit scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvtriage.audit.predictions import PREDICTIONS
from cvtriage.boxes import xywh_to_xyxy
from cvtriage.labels.fiftyone_loading import GROUND_TRUTH


@dataclass
class ImageLabels:
    """One sample's labels and predictions as arrays (boxes x1 y1 x2 y2, relative)."""

    sample_id: str
    image_path: str
    label_ids: list[str]
    label_classes: np.ndarray
    label_boxes: np.ndarray
    label_indices: list[int | None]
    pred_ids: list[str]
    pred_classes: np.ndarray
    pred_boxes: np.ndarray
    pred_confidences: np.ndarray



def read_image_labels(samples) -> list[ImageLabels]:
    """Labels and predictions of every sample, read in one query per field (not sample by sample)."""
    gt, pred = f"{GROUND_TRUTH}.detections", f"{PREDICTIONS}.detections"
    columns = samples.values(
        ["id", "filepath", f"{gt}.id", f"{gt}.label", f"{gt}.bounding_box", f"{gt}.label_index",
         f"{pred}.id", f"{pred}.label", f"{pred}.bounding_box", f"{pred}.confidence"]
    )
    records = []
    for sample_id, path, gid, glabel, gbox, gindex, pid, plabel, pbox, pconf in zip(*columns):
        records.append(
            ImageLabels(
                sample_id=sample_id,
                image_path=path,
                label_ids=gid or [],
                label_classes=np.asarray(glabel or [], dtype=object),
                label_boxes=xywh_to_xyxy(gbox or []),
                label_indices=gindex or [None] * len(gid or []),
                pred_ids=pid or [],
                pred_classes=np.asarray(plabel or [], dtype=object),
                pred_boxes=xywh_to_xyxy(pbox or []),
                pred_confidences=np.asarray(pconf or [], dtype=np.float64),
            )
        )
    return records

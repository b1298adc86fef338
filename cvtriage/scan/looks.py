"""Looks: scan events whose objects look alike, grouped, so that a reviewer can dispose of one
kind of junk (a cold-start model's 27 "refrigerators" on a football pitch) in one decision.

Each event's object, cut from its keyframe with a margin, becomes a small thumbnail in Lab
colour (mean removed, so a shade of light does not split a group), an embedding of its colour
layout. Events closer than SAME_LOOK_DISTANCE (cosine, average linkage) share a `look` number,
1 the largest group. The embeddings also back a FiftyOne similarity index, so in the App a
reviewer selects one event and sorts the rest by similarity to it.
"""

from __future__ import annotations

import numpy as np

LOOK_FIELD = "look"
EMBEDDING_FIELD = "look_embedding"
BRAIN_KEY = "looks"
THUMBNAIL = 12  # px a side
MARGIN = 0.15  # of the box's side, on every side: a little of the ground around the object
SAME_LOOK_DISTANCE = 0.35


def look_embedding(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The colour layout of the object in `box` (pixels) of a BGR image, unit length."""
    import cv2

    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    pad_x, pad_y = MARGIN * (x2 - x1), MARGIN * (y2 - y1)
    left, top = int(max(0, x1 - pad_x)), int(max(0, y1 - pad_y))
    right, bottom = int(min(width, x2 + pad_x)), int(min(height, y2 + pad_y))
    crop = image[top : max(bottom, top + 1), left : max(right, left + 1)]
    thumbnail = cv2.resize(crop, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(thumbnail, cv2.COLOR_BGR2LAB).astype(np.float32).reshape(-1, 3)
    vector = (lab - lab.mean(axis=0)).ravel()
    return vector / max(float(np.linalg.norm(vector)), 1e-6)


def group_looks(embeddings: np.ndarray) -> list[int]:
    """A look number per embedding: 1 for the largest group of alike ones, then 2, ..."""
    if len(embeddings) < 2:
        return [1] * len(embeddings)
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(
        n_clusters=None, distance_threshold=SAME_LOOK_DISTANCE, metric="cosine", linkage="average"
    ).fit_predict(np.asarray(embeddings))
    by_size = sorted(set(labels), key=lambda label: (-int(np.sum(labels == label)), int(np.argmax(labels == label))))
    number = {label: rank for rank, label in enumerate(by_size, start=1)}
    return [number[label] for label in labels]


def index_looks(dataset) -> None:
    """Number the looks of every event sample in `dataset` (all its videos) and refresh its
    similarity index. Samples without an embedding (scanned by an older cvtriage) are skipped."""
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    embedded = dataset.exists(EMBEDDING_FIELD).match(F(EMBEDDING_FIELD) != None)  # noqa: E711
    if len(embedded) == 0:
        return
    vectors = np.array(embedded.values(EMBEDDING_FIELD))
    embedded.set_values(LOOK_FIELD, group_looks(vectors))
    if BRAIN_KEY in dataset.list_brain_runs():
        dataset.delete_brain_run(BRAIN_KEY)
    if len(embedded) >= 2:
        fob.compute_similarity(embedded, embeddings=EMBEDDING_FIELD, brain_key=BRAIN_KEY, backend="sklearn")

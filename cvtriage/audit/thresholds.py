"""Flagging thresholds: each kind's, measured on the dataset itself by planting errors of that kind."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cvtriage.audit.findings import KINDS, Finding
from cvtriage.audit.image_labels import ImageLabels
from cvtriage.audit.inject import moved_box
from cvtriage.audit.scoring import detectability, score_image, weigh_by_image_contrast
from cvtriage.boxes import iou_matrix
from cvtriage.config import AuditConfig

# Scores of different kinds are not on one scale, and how far down a kind's ranking is worth a
# reviewer's time depends on the model and the imagery. So each kind's threshold is measured on the
# dataset itself: errors of that kind are planted in memory, one at a time in a copy of one image's
# labels (the model's predictions do not depend on the labels, so they stay valid), scored like the
# real labels, and the threshold is the lowest score at which the planted errors, scaled to
# assumed_error_rate, are at least flag_precision of the dataset's findings scoring as much.

# Planted errors per kind: with three seeds on 1,000 street images, each kind's flagged count moved
# by a few (class 44-47, spurious 41-43, location 35-42, missing 5-12); the check takes ~4 s there.
SIMULATED_PER_KIND = 200
SIMULATION_SEED = 0


def planted_error_scores(
    images: list[ImageLabels], config: AuditConfig, detectable: dict[tuple[str, int], float], classes: list[str]
) -> dict[str, list[float]]:
    """Per kind, the scores of SIMULATED_PER_KIND planted errors (0 for one whose evidence points to
    another kind, or to nothing): a label given another class, a label deleted (scored by the
    prediction on its object), a label moved (inject-errors' rule), a label added where none is."""
    rng = np.random.default_rng(SIMULATION_SEED)
    labelled = [image for image in images if len(image.label_ids)]
    sizes = np.concatenate([image.label_boxes[:, 2:] - image.label_boxes[:, :2] for image in labelled]) if labelled else None
    scores: dict[str, list[float]] = {kind: [] for kind in KINDS}
    to_weigh: list[Finding] = []  # planted spurious and location findings, weighed by contrast below

    def with_labels(image: ImageLabels, names: list[str], boxes: list[list[float]]) -> ImageLabels:
        ids = [f"planted-{i}" for i in range(len(boxes))]
        return replace(image, label_ids=ids, label_classes=np.asarray(names, dtype=object),
                       label_boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4), label_indices=[None] * len(ids))

    for kind in KINDS:
        for _ in range(SIMULATED_PER_KIND if labelled and (kind != "class" or len(classes) > 1) else 0):
            image = labelled[rng.integers(len(labelled))] if kind != "spurious" else images[rng.integers(len(images))]
            index = int(rng.integers(max(len(image.label_ids), 1)))
            label_classes, boxes = list(image.label_classes), [list(box) for box in image.label_boxes]
            if kind == "class":
                label_classes[index] = rng.choice([name for name in classes if name != label_classes[index]])
            elif kind == "missing":
                deleted = boxes.pop(index)
                label_classes.pop(index)
            elif kind == "location":
                moved = moved_box(boxes[index], [box for i, box in enumerate(boxes) if i != index], rng)
                if moved is None:
                    continue
                boxes[index] = list(moved[0])
            else:
                w, h = sizes[rng.integers(len(sizes))]
                x1, y1 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                if boxes and iou_matrix([[x1, y1, x1 + w, y1 + h]], boxes).max() > 0:
                    continue
                index = len(boxes)
                boxes.append([x1, y1, x1 + w, y1 + h])
                label_classes.append(classes[rng.integers(len(classes))])
            findings = score_image(with_labels(image, label_classes, boxes), config, detectable)
            if kind == "missing":
                on_object = [f.score for f in findings if f.kind == "missing" and iou_matrix([f.pred_box], [deleted])[0, 0] >= 0.5]
                scores[kind].append(max(on_object, default=0.0))
                continue
            finding = findings[index]
            if finding.kind != kind:
                scores[kind].append(0.0)
            elif kind == "class":
                scores[kind].append(finding.score)
            else:
                to_weigh.append(finding)
    for finding in weigh_by_image_contrast(to_weigh):
        scores[finding.kind].append(finding.score)
    return scores


def flag_thresholds(findings: list[Finding], planted: dict[str, list[float]], label_count: int, config: AuditConfig) -> dict[str, float]:
    """Per kind, the lowest score at which planted errors, scaled to the errors expected among
    `label_count` labels at config.assumed_error_rate (split evenly across kinds), are at least
    config.flag_precision of the findings scoring as much; inf when no score gets there."""
    expected_errors = config.assumed_error_rate * label_count / len(KINDS)
    thresholds = {}
    for kind in KINDS:
        real = np.sort([f.score for f in findings if f.kind == kind])
        planted_scores = np.sort(planted.get(kind, []))
        candidates = np.unique(real[real > 0])  # a threshold is a score some finding has
        thresholds[kind] = float("inf")
        if not len(candidates) or not len(planted_scores):
            continue
        real_at_least = len(real) - np.searchsorted(real, candidates, side="left")
        # Flagging from a finding's score flags the same findings as any threshold down to the next
        # lower finding's score: an error scoring anywhere above that would be flagged too.
        next_lower = np.concatenate([[0.0], candidates[:-1]])
        planted_above = len(planted_scores) - np.searchsorted(planted_scores, next_lower, side="right")
        holds = expected_errors * planted_above / len(planted_scores) >= config.flag_precision * real_at_least
        if holds.any():
            thresholds[kind] = float(candidates[holds].min())
    return thresholds


def choose_thresholds(
    images: list[ImageLabels], findings: list[Finding], config: AuditConfig, classes: list[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each kind's flagging threshold (config.min_score for every kind when set, else by the rule
    above), and the score from which its findings are searched for shared causes: the lower of the
    threshold and the median score of its planted errors that score at all. A cause shared by many findings is not a
    random slip, so the rule's assumed error rate does not hold for it: a labelling policy (objects
    cut off by the frame left out) can make most of a kind's findings errors, all of them alike."""
    if config.min_score is not None:
        return {kind: config.min_score for kind in KINDS}, {kind: config.min_score for kind in KINDS}
    planted = planted_error_scores(images, config, detectability(images, config.location_min_iou), classes)
    thresholds = flag_thresholds(findings, planted, sum(len(image.label_ids) for image in images), config)
    # The median of the planted errors the audit sees at all (a score above 0).
    seen = {kind: [score for score in planted[kind] if score > 0] for kind in KINDS}
    typical = {kind: float(np.median(seen[kind])) if seen[kind] else float("inf") for kind in KINDS}
    return thresholds, {kind: min(thresholds[kind], typical[kind]) for kind in KINDS}

"""The audit, end to end (`audit_labels`): rank a dataset's labels by how likely they are wrong, by kind of error.

A detector's predictions are compared with the labels in a FiftyOne dataset. Four kinds:

- class:    a label whose object the model sees, confidently, as another class;
- missing:  a confident prediction that no label explains (an unlabelled object);
- spurious: a label where the model sees nothing (no object there), weighed by how reliably the
            model sees labels of that class and size elsewhere in the dataset, and by how little
            the box's content stands out from the ground around it;
- location: a label whose object the model sees nearby, same class, overlapping poorly, weighed
            by whether the model's box frames the object better than the label's.

FiftyOne Brain's `compute_mistakenness` runs too (its fields `mistakenness`, `mistakenness_loc`,
`possible_missing`, `possible_spurious` are useful in the App), but its ranking falls short: a
badly placed box whose IoU with the prediction is under the match threshold is reported as one
spurious label plus one missing object, `possible_spurious` is a flag with no order, and
`possible_missing` needs a hard-coded 0.95 confidence (fiftyone-brain issue 111). cvtriage
scores each label and each unexplained prediction itself, from the IoU and confidence of every
prediction around it, and gives each label the one kind its evidence points to.

Each kind is flagged from its own threshold, measured on the dataset by planting errors of that
kind and scoring them with the same predictions (`choose_thresholds`); findings that share a cause
the audit can name (the image border, small boxes, a class, a folder) are summed up as one group
each, with a saved view (`group_findings`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from cvtriage.audit.findings import AuditReport
from cvtriage.audit.groups import flag_findings, group_findings, image_sizes
from cvtriage.audit.image_labels import read_image_labels
from cvtriage.audit.predictions import PREDICTIONS, PredictOptions, predict_into
from cvtriage.audit.reports import write_reports
from cvtriage.audit.scoring import (
    SEEN_VISIBILITY,
    label_visibility,
    rank_findings,
    weigh_by_image_contrast,
)
from cvtriage.audit.store import compute_fiftyone_mistakenness, evaluate, store_findings
from cvtriage.audit.thresholds import choose_thresholds
from cvtriage.config import AuditConfig
from cvtriage.errors import CvtriageError
from cvtriage.labels.fiftyone_loading import load_into_fiftyone
from cvtriage.logs import quieted
from cvtriage.progress import ProgressCallback, no_progress

# Images per model call on CUDA for `batch: auto` (the CPU takes them one at a time).
GPU_BATCH = 16


CLASS_MAP_HINT = "; if it knows the object by another name, map it: --map LABEL_CLASS=MODEL_CLASS (or class_map in the config)"


def model_class_names(dataset_classes: list[str], class_map: dict[str, str]) -> list[str]:
    """The model's name for each of the dataset's classes: class_map's, else the same name."""
    unknown = [label for label in class_map if label not in dataset_classes]
    if unknown:
        raise CvtriageError(
            f"class_map: the dataset has no class {', '.join(map(repr, unknown))} (it has: {', '.join(dataset_classes)})"
        )
    return [class_map.get(name, name) for name in dataset_classes]


def split_view(dataset, split: str):
    if split == "all":
        return dataset.view()
    view = dataset.match_tags(split)
    if not len(view):
        splits = ", ".join(tag for tag in ("train", "val", "test") if len(dataset.match_tags(tag))) or "none"
        raise CvtriageError(f"FiftyOne dataset {dataset.name!r}: no '{split}' samples (splits: {splits}); use --split all")
    return view


def quiet_fiftyone():
    """FiftyOne logs each step at INFO on stdout; the CLI shows its own progress instead."""
    return quieted("fiftyone", logging.WARNING)


class _Stages:
    """The audit's stages, each told to on_progress as it starts (its description as the detail, no
    total yet), and the seconds each took (kept in audit.json)."""

    def __init__(self, on_progress: ProgressCallback):
        self.on_progress = on_progress
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def start(self, key: str, description: str | None) -> None:
        """description None: the stage reports its own progress."""
        self.finish()
        if description:
            self.on_progress(0, None, description)
        self._current = (key, time.perf_counter())

    def finish(self) -> None:
        if self._current is not None:
            key, started = self._current
            self.seconds[key] = round(time.perf_counter() - started, 2)
            self._current = None


def audit_labels(
    data: str, config: AuditConfig, images_dir: Path | None = None, on_progress: ProgressCallback = no_progress
) -> AuditReport:
    """Load `data` into FiftyOne, predict (when `config.weights` is set), score every label, store
    tags, fields and saved views, and write audit.csv/audit.json. Each stage is reported to
    on_progress as it starts (detail: what it does); prediction reports images done of all."""
    from fiftyone import ViewField as F

    from cvtriage.models import (
        inference_batch,
        load_model,
        ready_to_predict,
        resolve_classes,
        resolve_device,
    )

    model = None
    if config.weights:  # an unusable model is said before a large dataset is loaded
        device = resolve_device(config.device)
        model = load_model(config.weights)
        ready_to_predict(model, config.weights, config.imgsz, device)  # before its class names: see model_to_run
    stages = _Stages(on_progress)
    stages.start("load", "Loading the dataset into FiftyOne")
    with quiet_fiftyone():
        loaded = load_into_fiftyone(data, config.dataset, images_dir, config.strict)
    dataset, problems = loaded.dataset, list(loaded.problems)
    view = split_view(dataset, config.split)
    if model is not None:
        # The model must know every class of the dataset, by the same name or through
        # class_map; it may know more (those are not predicted).
        classes = dataset.default_classes
        class_ids = resolve_classes(
            model, model_class_names(classes, config.class_map), f"--weights {config.weights}", CLASS_MAP_HINT
        )
        shared = [name for name, class_id in zip(classes, class_ids) if class_ids.count(class_id) > 1]
        if shared:
            raise CvtriageError(f"class_map: dataset classes {' and '.join(map(repr, shared))} would be one class of the model")
        batch = inference_batch(config.batch, device, GPU_BATCH)
        options = PredictOptions(config.conf, config.iou, config.imgsz, batch, device)
        stages.start("predict", None)
        # Predictions are stored under the dataset's class names, so every comparison (ours,
        # FiftyOne's evaluation and mistakenness) sees a mapped class as the same class.
        problems += predict_into(view, model, class_ids, options, on_progress=on_progress, names=dict(zip(class_ids, classes)))
    elif not len(view.exists(PREDICTIONS)):
        raise CvtriageError(
            f"FiftyOne dataset {dataset.name!r} has no '{PREDICTIONS}' to audit against; pass --weights "
            f"(a detector trained on these classes: {', '.join(dataset.default_classes)})"
        )
    view = view.exists(PREDICTIONS)
    if not len(view):
        raise CvtriageError(f"{data}: no image could be read")

    with quiet_fiftyone():
        stages.start("evaluate", "Evaluating predictions against labels")
        confident = view.filter_labels(PREDICTIONS, F("confidence") >= config.evaluate_conf, only_matches=False)
        evaluate(confident, config.match_iou)
        stages.start("mistakenness", "Computing FiftyOne Brain mistakenness")
        compute_fiftyone_mistakenness(confident, config.missing_confidence, config.match_iou)
        stages.start("rank", "Ranking labels")
        images = read_image_labels(view)
        findings = weigh_by_image_contrast(rank_findings(images, config))
        visibility = np.concatenate([label_visibility(image, config.location_min_iou) for image in images])
        labels_seen = float(np.mean(visibility >= SEEN_VISIBILITY)) if len(visibility) else None
        stages.start("thresholds", "Choosing each kind's threshold on planted errors")
        thresholds, group_floors = choose_thresholds(images, findings, config, dataset.default_classes)
        sizes = image_sizes(view)
        flagged = flag_findings(findings, thresholds, config, sizes)[0][: config.top]
        searched, border_ignored = flag_findings(findings, group_floors, config, sizes)
        groups = group_findings(searched, group_floors, images, sizes)
        stages.start("store", "Tagging samples and labels, saving views")
        store_findings(view, findings, flagged, groups)
    stages.finish()

    out_dir = Path(config.out) if config.out else Path("runs/audit") / dataset.name
    report = AuditReport(dataset.name, findings, flagged, len(view), problems, out_dir, stages.seconds, labels_seen,
                         thresholds, groups, border_ignored)
    write_reports(report, config, data)
    return report

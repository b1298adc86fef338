"""What the audit leaves in FiftyOne for the App: FiftyOne's own evaluation (TP/FP/FN per object)
and Brain's mistakenness fields, then the audit's scores and kinds on labels, its tags and saved views."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from cvtriage.audit.findings import (
    KINDS,
    LIKELY_MISLABELED,
    Finding,
    FindingGroup,
    audit_tag,
    kind_view_name,
)
from cvtriage.audit.predictions import PREDICTIONS
from cvtriage.labels.fiftyone_loading import GROUND_TRUTH

EVAL_KEY = "audit_eval"
MISTAKENNESS = "mistakenness"


@contextlib.contextmanager
def fiftyone_thresholds(missing_confidence: float, match_iou: float):
    """Run FiftyOne Brain's mistakenness with our thresholds: they are module constants there
    (fiftyone-brain issue 111 asks for parameters), so set them for the duration of the call."""
    import fiftyone.brain.internal.core.mistakenness as brain_mistakenness

    saved = brain_mistakenness._MISSED_CONFIDENCE_THRESHOLD, brain_mistakenness._DETECTION_IOU
    brain_mistakenness._MISSED_CONFIDENCE_THRESHOLD, brain_mistakenness._DETECTION_IOU = missing_confidence, match_iou
    try:
        yield
    finally:
        brain_mistakenness._MISSED_CONFIDENCE_THRESHOLD, brain_mistakenness._DETECTION_IOU = saved


def compute_fiftyone_mistakenness(samples, missing_confidence: float = 0.95, match_iou: float = 0.5) -> None:
    """FiftyOne Brain's mistakenness fields on `samples` (the previous run is replaced)."""
    import fiftyone.brain as fob

    dataset = samples._dataset
    if dataset.has_brain_run(MISTAKENNESS):
        dataset.delete_brain_run(MISTAKENNESS)
    with fiftyone_thresholds(missing_confidence, match_iou):
        fob.compute_mistakenness(samples, PREDICTIONS, label_field=GROUND_TRUTH, progress=False)


def evaluate(samples, match_iou: float) -> None:
    """Per-object TP/FP/FN under eval key `audit_eval`, for filtering in the App."""
    dataset = samples._dataset
    if dataset.has_evaluation(EVAL_KEY):
        dataset.delete_evaluation(EVAL_KEY)
    samples.evaluate_detections(
        PREDICTIONS, gt_field=GROUND_TRUTH, eval_key=EVAL_KEY, iou=match_iou, classwise=False, progress=False
    )


def store_findings(samples, findings: list[Finding], flagged: list[Finding], groups: Sequence[FindingGroup] = ()) -> None:
    """Per-label `audit_kind`/`audit_score`, sample `audit_score`, the audit tags on samples and on
    labels of flagged findings, and the saved views (of each kind, and of each group). Results of a
    previous audit are cleared first."""
    from fiftyone import ViewField as F

    dataset = samples._dataset
    tags = [audit_tag(kind) for kind in KINDS]
    dataset.untag_samples(tags)
    dataset.untag_labels(tags, label_fields=[GROUND_TRUTH, PREDICTIONS])
    for name in ("audit_score", f"{GROUND_TRUTH}.detections.audit_score", f"{GROUND_TRUTH}.detections.audit_kind",
                 f"{PREDICTIONS}.detections.audit_score", f"{PREDICTIONS}.detections.audit_kind"):
        if dataset.has_field(name):
            dataset.delete_sample_field(name)

    for field_name, attribute in ((GROUND_TRUTH, "label_id"), (PREDICTIONS, "pred_id")):
        relevant = [f for f in findings if (f.kind == "missing") == (field_name == PREDICTIONS)]
        for key, value_of in (("audit_score", lambda f: round(f.score, 4)), ("audit_kind", lambda f: f.kind)):
            values = [
                {"sample_id": f.sample_id, "label_id": getattr(f, attribute), "value": value_of(f)} for f in relevant
            ]
            if values:
                dataset.set_label_values(f"{field_name}.detections.{key}", values, dynamic=True)

    best: dict[str, float] = {}
    for finding in findings:
        best[finding.sample_id] = max(best.get(finding.sample_id, 0.0), finding.score)
    if best:
        samples.set_values("audit_score", best, key_field="id")
    for kind in KINDS:
        of_kind = [f for f in flagged if f.kind == kind]
        if not of_kind:
            continue
        dataset.select([f.sample_id for f in of_kind]).tag_samples(audit_tag(kind))
        label_ids = [f.pred_id if kind == "missing" else f.label_id for f in of_kind]
        field_name = PREDICTIONS if kind == "missing" else GROUND_TRUTH
        dataset.select_labels(ids=label_ids, fields=field_name).tag_labels(audit_tag(kind), label_fields=field_name)

    dataset.save_view(
        LIKELY_MISLABELED, dataset.match_tags(tags).sort_by("audit_score", reverse=True), overwrite=True
    )
    for kind in KINDS:
        # Each kind's view sorts by the sample's best score of that kind (not of any kind).
        field_name = PREDICTIONS if kind == "missing" else GROUND_TRUTH
        kind_score = F(f"{field_name}.detections").filter(F("audit_kind") == kind).map(F("audit_score")).max()
        dataset.save_view(
            kind_view_name(kind), dataset.match_tags(audit_tag(kind)).sort_by(kind_score, reverse=True), overwrite=True
        )
    kept = {LIKELY_MISLABELED, *(kind_view_name(kind) for kind in KINDS), *(group.view for group in groups)}
    for name in dataset.list_saved_views():  # a previous audit's groups
        if name.startswith("audit-") and name not in kept:
            dataset.delete_saved_view(name)
    for group in groups:
        field_name = PREDICTIONS if group.kind == "missing" else GROUND_TRUTH
        kind_score = F(f"{field_name}.detections").filter(F("audit_kind") == group.kind).map(F("audit_score")).max()
        view = dataset.match_labels(ids=group.ids, fields=field_name).sort_by(kind_score, reverse=True)
        dataset.save_view(group.view, view, overwrite=True)

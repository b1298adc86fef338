"""The audit ranking on real FiftyOne samples: ground truth, predictions derived from the truth,
and labels corrupted in known ways; plus one CLI run end to end with a random-init model."""

from __future__ import annotations

import csv
import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner
from yolo_factory import write_yolo_dataset

from cvtriage.audit.findings import (
    KINDS,
    LIKELY_MISLABELED,
    Finding,
    audit_tag,
    kind_view_name,
)
from cvtriage.audit.image_labels import ImageLabels, read_image_labels
from cvtriage.audit.predictions import PREDICTIONS
from cvtriage.audit.reports import CSV_COLUMNS
from cvtriage.audit.scoring import (
    rank_findings,
    surround_contrast,
    weigh_by_image_contrast,
)
from cvtriage.audit.store import compute_fiftyone_mistakenness, evaluate, store_findings
from cvtriage.cli import app
from cvtriage.config import AuditConfig
from cvtriage.labels.fiftyone_loading import GROUND_TRUTH

CLASSES = ["car", "person", "boat"]


def _box(rng):
    w, h = rng.uniform(0.06, 0.12, 2)
    return [rng.uniform(0, 1 - w), rng.uniform(0, 1 - h), w, h]


def _jitter(box, rng, amount=0.04):
    """A prediction of the same object: a few percent off, IoU about 0.85."""
    x, y, w, h = box
    return [x + rng.uniform(-amount, amount) * w, y + rng.uniform(-amount, amount) * h,
            w * (1 + rng.uniform(-amount, amount)), h * (1 + rng.uniform(-amount, amount))]


def _iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _non_overlapping_boxes(rng, count):
    boxes = []
    while len(boxes) < count:
        box = _box(rng)
        if all(_iou(box, other) == 0 for other in boxes):
            boxes.append(box)
    return boxes


@pytest.fixture(scope="module")
def corrupted_dataset():
    """24 images x 5 objects. Predictions: every true object (confidence 0.6-0.95), plus the model's
    usual doubts (a low-confidence other-class box on some objects). Labels: the truth with one
    error of each kind, in known images."""
    import fiftyone as fo

    rng = np.random.default_rng(7)
    dataset = fo.Dataset(f"test-audit-{uuid.uuid4().hex[:8]}")
    dataset.default_classes = CLASSES
    samples, truth = [], {}
    for index in range(24):
        objects = [(CLASSES[rng.integers(3)], box) for box in _non_overlapping_boxes(rng, 5)]
        predictions = []
        for label, box in objects:
            predictions.append(fo.Detection(label=label, bounding_box=_jitter(box, rng), confidence=rng.uniform(0.6, 0.95)))
            if rng.random() < 0.3:
                other = CLASSES[(CLASSES.index(label) + 1) % 3]
                predictions.append(fo.Detection(label=other, bounding_box=_jitter(box, rng), confidence=rng.uniform(0.05, 0.2)))
        labels = [fo.Detection(label=label, bounding_box=list(box), label_index=i) for i, (label, box) in enumerate(objects)]
        truth[index] = objects
        samples.append(
            fo.Sample(
                filepath=f"/nonexistent/image_{index:03d}.jpg", tags=["train"],
                **{GROUND_TRUTH: fo.Detections(detections=labels), PREDICTIONS: fo.Detections(detections=predictions)},
            )
        )
    # The model is sure of the objects whose labels get an error (it is of most objects).
    for image, obj in ((3, 1), (5, 2), (11, 0)):
        confident = next(p for p in samples[image][PREDICTIONS].detections if p.label == truth[image][obj][0]
                         and _iou(p.bounding_box, truth[image][obj][1]) > 0.5)
        confident.confidence = 0.9
    # class: image 3, object 1 relabelled
    wrong = samples[3][GROUND_TRUTH].detections[1]
    wrong.label = CLASSES[(CLASSES.index(wrong.label) + 1) % 3]
    # missing: image 5, object 2 deleted (its prediction stays)
    deleted_box = samples[5][GROUND_TRUTH].detections.pop(2).bounding_box
    # spurious: image 8, a label where nothing is, far from every object
    free = next(b for b in (_box(rng) for _ in range(1000)) if all(_iou(b, o[1]) == 0 for o in truth[8]))
    samples[8][GROUND_TRUTH].detections.append(fo.Detection(label="boat", bounding_box=free, label_index=5))
    # location: image 11, object 0 shifted by half a box and shrunk: IoU with the truth about 0.3
    moved = samples[11][GROUND_TRUTH].detections[0]
    x, y, w, h = moved.bounding_box
    moved.bounding_box = [x + 0.35 * w, y + 0.3 * h, w * 0.8, h * 0.8]
    dataset.add_samples(samples)
    expected = {
        "class": (dataset.skip(3).first().id, wrong.label),
        "missing": (dataset.skip(5).first().id, deleted_box),
        "spurious": (dataset.skip(8).first().id, free),
        "location": (dataset.skip(11).first().id, moved.bounding_box),
        "location_iou": _iou(moved.bounding_box, truth[11][0][1]),
    }
    yield dataset, expected
    dataset.delete()


def test_each_injected_error_ranks_first_in_its_kind(corrupted_dataset):
    dataset, expected = corrupted_dataset
    assert 0.1 < expected["location_iou"] < 0.5
    findings = rank_findings(read_image_labels(dataset), AuditConfig())
    for kind in KINDS:
        top = next(finding for finding in findings if finding.kind == kind)
        sample_id, detail = expected[kind]
        assert top.sample_id == sample_id, kind
        if kind == "class":
            assert top.label_class == detail and top.pred_class != detail
        elif kind == "missing":
            x1, y1, x2, y2 = top.pred_box
            assert _iou([x1, y1, x2 - x1, y2 - y1], detail) > 0.7
        else:
            x1, y1, x2, y2 = top.label_box
            assert np.allclose([x1, y1, x2 - x1, y2 - y1], detail)
    # The four errors are the four highest scores overall: correct labels score far below.
    assert {(f.kind, f.sample_id) for f in findings[:4]} == {(kind, expected[kind][0]) for kind in KINDS}
    assert findings[3].score >= 0.5 > findings[4].score


def image_labels(
    index: int, labels: list[tuple[str, list[float]]], predictions: list[tuple[str, list[float], float]], folder: str = "images"
):
    """One image's labels and predictions as the ranking sees them (boxes relative x1 y1 x2 y2)."""
    return ImageLabels(
        sample_id=f"s{index}", image_path=f"/{folder}/{index}.jpg",
        label_ids=[f"l{index}-{i}" for i in range(len(labels))],
        label_classes=np.array([c for c, _ in labels], dtype=object),
        label_boxes=np.array([b for _, b in labels], dtype=float).reshape(-1, 4), label_indices=list(range(len(labels))),
        pred_ids=[f"p{index}-{i}" for i in range(len(predictions))],
        pred_classes=np.array([c for c, _, _ in predictions], dtype=object),
        pred_boxes=np.array([b for _, b, _ in predictions], dtype=float).reshape(-1, 4),
        pred_confidences=np.array([p for _, _, p in predictions], dtype=float),
    )  # fmt: skip


def test_an_unseen_label_is_suspicious_as_far_as_the_model_sees_its_kind_elsewhere():
    car, person = [0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.6, 0.6]
    # 30 images: the model sees every car and misses 2 persons in 3 (a class it learned poorly).
    images = [
        image_labels(i, [("car", car), ("person", person)], [("car", car, 0.9)] + ([("person", person, 0.8)] if i % 3 == 0 else []))
        for i in range(30)
    ]
    # Image 30: a car label and a person label, same size as the others, neither seen by the model.
    images.append(image_labels(30, [("car", car), ("person", person)], []))
    findings = [f for f in rank_findings(images, AuditConfig()) if f.kind == "spurious"]
    assert (findings[0].sample_id, findings[0].label_class) == ("s30", "car") and findings[0].score > 0.8
    # An unseen person is no more suspicious than the 20 persons the model misses elsewhere: all
    # rank together, below the car and below min_score.
    unseen_person = next(f for f in findings if (f.sample_id, f.label_class) == ("s30", "person"))
    assert unseen_person.score < 0.5
    assert sorted(f.sample_id for f in findings[1:] if f.score == unseen_person.score) == sorted(
        [f"s{i}" for i in range(30) if i % 3] + ["s30"]
    )


def test_a_faint_prediction_under_a_label_makes_it_far_less_suspicious_than_nothing_at_all():
    car, other_car = [0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.6, 0.6]
    # 20 images where the model sees both cars well; then one label with nothing under it and
    # one with only a faint car under it (confidence 0.15): something is there, the model is just
    # unsure of it.
    images = [image_labels(i, [("car", car), ("car", other_car)], [("car", car, 0.9), ("car", other_car, 0.9)])
              for i in range(20)]  # fmt: skip
    images.append(image_labels(20, [("car", car), ("car", other_car)], [("car", other_car, 0.15)]))
    spurious = {f.label_id: f.score for f in rank_findings(images, AuditConfig()) if f.kind == "spurious"}
    nothing, faint = spurious["l20-0"], spurious["l20-1"]
    assert nothing > 0.5 > faint
    assert faint < nothing / 2


def test_image_contrast_weighs_spurious_and_location_findings(tmp_path):
    import cv2

    # Grass-like ground (noisy green), one red object, and nothing at all elsewhere.
    rng = np.random.default_rng(0)
    ground = np.clip(rng.normal([60, 140, 70], 12, (200, 300, 3)), 0, 255).astype(np.uint8)
    ground[80:120, 40:70] = (30, 30, 200)  # BGR red
    image_path = str(tmp_path / "ground.jpg")
    cv2.imwrite(image_path, ground)
    on_object, on_ground = [40 / 300, 80 / 200, 70 / 300, 120 / 200], [200 / 300, 60 / 200, 230 / 300, 100 / 200]
    half_off = [55 / 300, 100 / 200, 85 / 300, 140 / 200]  # half on the object, half on the ground
    findings = [
        # A label the model saw nothing under: on the object (the model missed it) or on empty ground.
        Finding("spurious", 0.8, "s0", image_path, label_id="object", label_box=on_object),
        Finding("spurious", 0.8, "s0", image_path, label_id="ground", label_box=on_ground),
        # A label and the model's box overlapping poorly: which of the two frames the object?
        Finding("location", 0.6, "s0", image_path, label_id="label off", label_box=half_off, pred_box=on_object),
        Finding("location", 0.6, "s0", image_path, label_id="model off", label_box=on_object, pred_box=half_off),
        Finding("spurious", 0.5, "s1", str(tmp_path / "unreadable.jpg"), label_id="unread", label_box=on_ground),
        Finding("class", 0.7, "s0", image_path, label_id="class", label_box=on_object, pred_box=on_ground),
    ]
    weighed = weigh_by_image_contrast(findings)
    score = {f.label_id: f.score for f in weighed}
    assert weighed[0].label_id == "ground" and score["ground"] > 0.6 and score["object"] < 0.1
    assert score["label off"] == 0.6 and score["model off"] < 0.3
    assert score["unread"] == 0.5 and score["class"] == 0.7  # no image, or another kind: unchanged
    lab = cv2.cvtColor(ground, cv2.COLOR_BGR2LAB)
    assert surround_contrast(lab, [0, 0, 1, 1]) == 0.0  # a box over the whole image has no surroundings


def test_a_badly_placed_box_is_one_location_finding_not_missing_plus_spurious(corrupted_dataset):
    dataset, expected = corrupted_dataset
    sample_id = expected["location"][0]
    findings = [f for f in rank_findings(read_image_labels(dataset), AuditConfig()) if f.sample_id == sample_id]
    location = next(f for f in findings if f.kind == "location")
    assert location.score > 0.5
    assert not [f for f in findings if f.kind == "missing" and f.score > 0.2]
    assert not [f for f in findings if f.kind == "spurious" and f.score > 0.5]

    # FiftyOne Brain's mistakenness (the reference) reads the same box as a spurious label.
    compute_fiftyone_mistakenness(dataset)
    sample = dataset[sample_id]
    moved = next(d for d in sample[GROUND_TRUTH].detections if d.id == location.label_id)
    assert moved["possible_spurious"] is True


def test_thresholds_change_what_counts_as_a_location_error(corrupted_dataset):
    dataset, expected = corrupted_dataset
    strict = AuditConfig(location_min_iou=0.45, match_iou=0.5)
    findings = rank_findings(read_image_labels(dataset), strict)
    moved = next(f for f in findings if f.sample_id == expected["location"][0] and f.label_box is not None
                 and np.allclose(f.label_box[:2], expected["location"][1][:2]))
    # IoU about 0.3 is below the stricter range: the box now reads as spurious.
    assert moved.kind == "spurious"


def test_results_are_stored_as_tags_fields_and_saved_views(corrupted_dataset):
    dataset, expected = corrupted_dataset
    config = AuditConfig(min_score=0.5)
    evaluate(dataset, config.match_iou)
    findings = rank_findings(read_image_labels(dataset), config)
    flagged = [f for f in findings if f.score >= config.min_score]
    store_findings(dataset, findings, flagged)
    store_findings(dataset, findings, flagged)  # a second audit replaces the first
    assert dataset.has_evaluation("audit_eval")
    for kind in KINDS:
        view = dataset.load_saved_view(kind_view_name(kind))
        assert view.values("id") == [expected[kind][0]]
        field = PREDICTIONS if kind == "missing" else GROUND_TRUTH
        assert dataset.count_label_tags(field).get(audit_tag(kind)) == 1
    assert dataset.count_sample_tags() == {"train": 24, **{audit_tag(kind): 1 for kind in KINDS}}
    mislabeled = dataset.load_saved_view(LIKELY_MISLABELED)
    scores = mislabeled.values("audit_score")
    assert len(mislabeled) == 4 and scores == sorted(scores, reverse=True)
    assert dataset.count(f"{GROUND_TRUTH}.detections.audit_score") == dataset.count(f"{GROUND_TRUTH}.detections")


def test_each_kinds_view_sorts_by_that_kinds_score_not_the_samples_best(corrupted_dataset):
    dataset, _ = corrupted_dataset
    first, second = read_image_labels(dataset)[:2]
    # Sample `first`: a very likely missing box and a weak class error; `second`: a stronger class error.
    findings = [
        Finding("missing", 0.95, first.sample_id, first.image_path, pred_id=first.pred_ids[0]),
        Finding("class", 0.8, second.sample_id, second.image_path, label_id=second.label_ids[0]),
        Finding("class", 0.6, first.sample_id, first.image_path, label_id=first.label_ids[0]),
    ]
    store_findings(dataset, findings, findings)
    assert dataset.load_saved_view(kind_view_name("class")).values("id") == [second.sample_id, first.sample_id]
    assert dataset.load_saved_view(LIKELY_MISLABELED).values("id") == [first.sample_id, second.sample_id]


def test_cli_audit_end_to_end(tmp_path, random_init_weights):
    import fiftyone as fo

    data = write_yolo_dataset(tmp_path / "data", {"train": 4, "val": 2})
    name = f"test-cli-audit-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "report"
    args = ["audit-labels", str(data), "--weights", str(random_init_weights), "--dataset", name,
            "--imgsz", "64", "--out", str(out), "--min-score", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "audit.csv").open()))
    # A model that sees nothing is no evidence against any label: nothing is flagged, and it says so.
    assert "warning: the model sees almost none of the labels" in result.output
    assert rows == []
    assert next(csv.reader((out / "audit.csv").open())) == CSV_COLUMNS
    report = json.loads((out / "audit.json").read_text())
    assert (out / "audit_scores.png").stat().st_size > 0
    assert report["labels_seen"] == 0 and report["counts"]["spurious"] == 0 and report["rows"] == []
    dataset = fo.load_dataset(name)
    ids = sorted(dataset.values("id"))
    assert dataset.persistent and dataset.count(PREDICTIONS) == 6
    assert set(dataset.list_saved_views()) >= {LIKELY_MISLABELED, *(kind_view_name(k) for k in KINDS)}

    # Re-running updates the same samples; --top trims the report (--min-score 0: every label).
    result = CliRunner().invoke(app, [*args[:-1], "0", "--top", "5", "--split", "val"])
    assert result.exit_code == 0, result.output
    assert sorted(dataset.values("id")) == ids
    rows = list(csv.DictReader((out / "audit.csv").open()))
    assert len(rows) == 5 and {row["kind"] for row in rows} == {"spurious"}
    assert {"rank", "image_path", "label_index", "kind", "score", "label_class", "label_cxcywh",
            "pred_class", "pred_cxcywh", "pred_confidence"} <= set(rows[0])
    dataset.delete()


def test_cli_unusable_export_is_one_line_before_the_dataset_is_loaded(tmp_path):
    """Ultralytics opens an export only at its first prediction: a broken one stopped the audit
    with a traceback where the model's class names were first asked for."""
    import fiftyone as fo

    data = write_yolo_dataset(tmp_path / "data", {"train": 2, "val": 1})
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a model")
    name = f"test-cli-audit-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(app, ["audit-labels", str(data), "--weights", str(broken), "--dataset", name,
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("cvtriage: error:")]
    assert len(errors) == 1 and f"{broken}: cannot load these weights" in errors[0], result.output
    assert not fo.dataset_exists(name) and not (tmp_path / "report").exists()


def test_cli_undecodable_image_is_named_and_left_out(tmp_path, random_init_weights):
    import fiftyone as fo

    data = write_yolo_dataset(tmp_path / "data", {"train": 2, "val": 1})
    broken = tmp_path / "data" / "images" / "train" / "train_001.jpg"
    broken.write_bytes(b"not an image")
    name = f"test-cli-audit-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(app, ["audit-labels", str(data), "--weights", str(random_init_weights), "--dataset", name,
                                      "--imgsz", "64", "--out", str(tmp_path / "report"), "--min-score", "0"])
    assert result.exit_code == 0, result.output
    assert f"warning: {broken}: image cannot be decoded (left out)" in result.output
    rows = list(csv.DictReader((tmp_path / "report" / "audit.csv").open()))
    assert rows and str(broken) not in {row["image_path"] for row in rows}
    assert len(fo.load_dataset(name)) == 2
    fo.load_dataset(name).delete()

"""The audit end to end with a detector that sees the objects: `cvtriage synth dataset`, then
`inject-errors`, then `audit-labels --weights demo` (the shipped demo model, trained on such
images), through the command line. The planted errors come back, and every box on the way
(YOLO label line -> FiftyOne -> audit.csv) is where the label file says. Skipped when the demo
weights are absent."""

from __future__ import annotations

import csv
import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

from cvtriage.boxes import cxcywh_to_xywh, cxcywh_to_xyxy, iou_matrix
from cvtriage.cli import app
from cvtriage.labels.fiftyone_loading import GROUND_TRUTH
from cvtriage.labels.yolo import read_yolo_dataset
from cvtriage.paths import DEMO_WEIGHTS

runner = CliRunner()


def cxcywh(text: str) -> np.ndarray:
    return np.array([float(value) for value in text.split()[-4:]])


def same_object(a: np.ndarray, b: np.ndarray) -> bool:
    return iou_matrix(cxcywh_to_xyxy(a)[None], cxcywh_to_xyxy(b)[None])[0, 0] >= 0.5


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """30 synthetic images at 320 px, 10% of their train labels corrupted (seeded), audited by the
    demo model: (noisy dataset folder, inject-errors' manifest, audit.csv rows, FiftyOne dataset)."""
    import fiftyone as fo

    if not DEMO_WEIGHTS.is_file():
        pytest.skip(f"{DEMO_WEIGHTS} not present")
    work = tmp_path_factory.mktemp("audit-demo")
    name = f"test-audit-demo-{uuid.uuid4().hex[:8]}"
    steps = [
        ["synth", "dataset", str(work / "synth"), "--images", "30", "--imgsz", "320", "--min-size", "24",
         "--max-size", "100", "--seed", "3", "--workers", "1"],
        ["inject-errors", str(work / "synth"), str(work / "noisy"), "--rate", "0.1", "--seed", "1"],
        ["audit-labels", str(work / "noisy"), "--weights", "demo", "--imgsz", "320", "--dataset", name,
         "--out", str(work / "audit")],
    ]  # fmt: skip
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, (step[:2], result.output)
    manifest = json.loads((work / "noisy" / "manifest.json").read_text())
    with open(work / "audit" / "audit.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    yield work / "noisy", manifest, rows, fo.load_dataset(name)
    fo.delete_dataset(name)


def row_of(error: dict, rows: list[dict], noisy) -> dict | None:
    """The audit.csv row that names the planted error: its label line, or (a deleted box) the
    model's box on the object whose label was deleted."""
    image = str((noisy / error["image_path"]).resolve())
    for row in rows:
        if row["image_path"] != image or row["kind"] != error["kind"]:
            continue
        if error["kind"] == "missing":
            if same_object(cxcywh(row["pred_cxcywh"]), cxcywh(error["original"])):
                return row
        elif row["label_index"] == str(error["line_index"]):
            return row
    return None


@pytest.mark.slow
def test_planted_errors_come_back_with_their_boxes_where_the_label_files_put_them(audited):
    """Fails if labels are loaded into FiftyOne with the box centre taken for its corner
    (cvtriage.labels.fiftyone_loading, _yolo_samples: `cxcywh_to_xywh((box.cx, box.cy, box.w,
    box.h)).tolist()` -> `[box.cx, box.cy, box.w, box.h]`): every label then lies half a box off
    its object, and neither the boxes nor the findings are right."""
    noisy, manifest, rows, dataset = audited
    names = read_yolo_dataset(noisy).names
    report = json.loads((noisy.parent / "audit" / "audit.json").read_text())
    assert report["labels_seen"] > 0.5  # a model that sees the objects (measured: 87% of the labels)
    assert len(manifest["errors"]) == 7 and rows

    found = {(error["kind"], error["image_path"]): row_of(error, rows, noisy) for error in manifest["errors"]}
    # Measured on these seeds with the demo model (it sees 87% of the labels): 4 of the 7 flagged (a
    # deleted box, a moved box, two spurious boxes); the two swapped classes score under their
    # kind's threshold. The boxes of every error are checked below, flagged or not.
    assert sum(row is not None for row in found.values()) >= 4, found
    assert {kind for (kind, _), row in found.items() if row is not None} >= {"missing", "location", "spurious"}

    for error in manifest["errors"]:
        row = found[(error["kind"], error["image_path"])]
        sample = dataset[str((noisy / error["image_path"]).resolve())]
        labels = {label.label_index: label for label in sample[GROUND_TRUTH].detections}
        if error["kind"] == "missing":
            # Deleted from the label file, so from FiftyOne; the model's box is on the object.
            held = [np.array([x + w / 2, y + h / 2, w, h]) for x, y, w, h in (label.bounding_box for label in labels.values())]
            assert not any(same_object(box, cxcywh(error["original"])) for box in held)
            if row is not None:
                assert same_object(cxcywh(row["pred_cxcywh"]), cxcywh(error["original"]))
            continue
        # The corrupted line, as FiftyOne holds it: top-left corner and size, relative.
        injected = error["injected"].split()
        label = labels[error["line_index"]]
        assert label.label == names[int(injected[0])]
        assert label.bounding_box == pytest.approx(cxcywh_to_xywh(cxcywh(error["injected"])).tolist(), abs=1e-6)
        if row is not None:  # and as audit.csv reports it: the label line's own numbers
            assert row["label_class"] == names[int(injected[0])]
            assert cxcywh(row["label_cxcywh"]) == pytest.approx(cxcywh(error["injected"]), abs=2e-6)
            if error["kind"] in ("class", "location"):  # the model's box on the object the label was for
                assert same_object(cxcywh(row["pred_cxcywh"]), cxcywh(error["original"]))

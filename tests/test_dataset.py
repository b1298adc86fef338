"""Reading YOLO datasets, loading YOLO / COCO / named datasets into FiftyOne, and the clear
one-line errors a user gets for bad input."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner
from yolo_factory import NAMES, write_yolo_dataset

from cvtriage.boxes import iou_matrix
from cvtriage.cli import app
from cvtriage.errors import CvtriageError
from cvtriage.labels.fiftyone_loading import (
    GROUND_TRUTH,
    default_dataset_name,
    load_into_fiftyone,
)
from cvtriage.labels.yolo import read_yolo_dataset, require_readable_labels


def _name() -> str:
    return f"test-dataset-{uuid.uuid4().hex[:8]}"


def test_read_yolo_dataset_and_label_problems(tmp_path):
    data = write_yolo_dataset(tmp_path, {"train": 3, "val": 1})
    dataset = read_yolo_dataset(data)
    assert dataset.names == NAMES and [len(dataset.images(s)) for s in ("train", "val")] == [3, 1]
    assert all(len(image.boxes) == 4 for image in dataset.images())
    label = tmp_path / "labels" / "train" / "train_001.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n0 1.5 0.5 0.1 0.1\n")
    broken = read_yolo_dataset(data)
    assert [str(p) for p in broken.problems] == [
        f"{label}:5: class id 7 out of range 0..2",
        f"{label}:6: coordinates outside 0..1 (or empty box): '0 1.5 0.5 0.1 0.1'",
    ]
    with pytest.raises(CvtriageError, match=f"{label}:5: class id 7 out of range 0..2 \\(and 1 more"):
        require_readable_labels(broken)


def test_iou_matrix():
    boxes = [[0, 0, 2, 2], [1, 1, 3, 3]]
    matrix = iou_matrix(boxes, [[0, 0, 2, 2], [5, 5, 6, 6]])
    assert matrix.shape == (2, 2)
    assert matrix[0, 0] == 1 and matrix[0, 1] == 0 and matrix[1, 0] == pytest.approx(1 / 7)
    assert iou_matrix(boxes, []).shape == (2, 0)


def test_yolo_dataset_loads_into_fiftyone_and_reloads_without_duplicates(tmp_path):
    data = write_yolo_dataset(tmp_path / "data", {"train": 3, "val": 2})
    name = _name()
    dataset = load_into_fiftyone(data, name).dataset
    assert dataset.persistent and len(dataset) == 5 and dataset.default_classes == NAMES
    assert dataset.count_sample_tags() == {"train": 3, "val": 2}
    assert dataset.info["data_yaml"] == str(data.resolve())
    first = dataset.match_tags("val").first()
    lines = open(first.label_path).read().splitlines()
    for detection in first[GROUND_TRUTH].detections:
        class_id, cx, cy, w, h = lines[detection.label_index].split()
        assert NAMES[int(class_id)] == detection.label
        assert detection.bounding_box == pytest.approx([float(cx) - float(w) / 2, float(cy) - float(h) / 2, float(w), float(h)])

    ids = sorted(dataset.values("id"))
    label = tmp_path / "data" / "labels" / "train" / "train_000.txt"
    label.write_text("\n".join(label.read_text().splitlines()[:1]) + "\n")
    (tmp_path / "data" / "images" / "val" / "val_001.jpg").unlink()
    reloaded = load_into_fiftyone(data, name).dataset
    assert len(reloaded) == 4 and set(reloaded.values("id")) < set(ids)
    counts = dict(zip([p.split("/")[-1] for p in reloaded.values("filepath")], reloaded.values(f"{GROUND_TRUTH}.detections")))
    assert len(counts["train_000.jpg"]) == 1 and len(counts["train_001.jpg"]) == 4
    assert default_dataset_name(data) == "cvtriage-data"
    reloaded.delete()


def test_coco_json_loads_into_fiftyone(tmp_path):
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        cv2.imwrite(str(images / f"{index}.jpg"), np.full((40, 50, 3), 100, np.uint8))
    coco = {
        "images": [{"id": 1, "file_name": "0.jpg", "width": 50, "height": 40},
                   {"id": 2, "file_name": "1.jpg", "width": 50, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [5, 4, 10, 8], "area": 80, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 25, 10], "area": 250, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
    }
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(coco))
    dataset = load_into_fiftyone(labels, _name()).dataset
    assert dataset.default_classes == ["car", "person"] and len(dataset) == 2
    first = dataset.sort_by("filepath").first()
    person, car = first[GROUND_TRUTH].detections
    assert (person.label, person.label_index, car.label, car.label_index) == ("person", 0, "car", 1)
    assert person.bounding_box == pytest.approx([0.1, 0.1, 0.2, 0.2])
    dataset.delete()

    labels.write_text("{not json")
    with pytest.raises(CvtriageError, match="labels.json: not valid JSON"):
        load_into_fiftyone(labels, _name())


def test_existing_fiftyone_dataset_by_name():
    import fiftyone as fo

    name = _name()
    dataset = fo.Dataset(name)
    dataset.add_sample(fo.Sample(filepath="/x/a.jpg", **{GROUND_TRUTH: fo.Detections(
        detections=[fo.Detection(label="b", bounding_box=[0, 0, 0.1, 0.1]), fo.Detection(label="a", bounding_box=[0.5, 0.5, 0.1, 0.1])])}))
    loaded = load_into_fiftyone(name).dataset
    assert loaded.name == name and loaded.default_classes == ["a", "b"]
    dataset.delete()
    with pytest.raises(CvtriageError, match=f"{name}: not a file, a folder, or a FiftyOne dataset name"):
        load_into_fiftyone(name)


# --- bad input through the CLI: one line naming the file and the problem, exit code 2 ------------


def _audit(*args):
    result = CliRunner().invoke(app, ["audit-labels", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("cvtriage: error:")]
    assert len(lines) == 1
    return lines[0]


def test_cli_data_yaml_missing_keys_or_paths(tmp_path):
    data = write_yolo_dataset(tmp_path, {"train": 1, "val": 1})
    content = yaml.safe_load(data.read_text())
    data.write_text(yaml.safe_dump({"train": content["train"], "names": content["names"]}))
    assert _audit(data) == f"cvtriage: error: {data}: missing key val"
    data.write_text(yaml.safe_dump({**content, "val": "images/nowhere"}))
    assert _audit(data) == f"cvtriage: error: {data}: 'val' path {tmp_path / 'images' / 'nowhere'} does not exist"


def test_cli_out_of_range_labels(tmp_path):
    data = write_yolo_dataset(tmp_path, {"train": 1, "val": 1})
    label = tmp_path / "labels" / "val" / "val_000.txt"
    label.write_text("5 0.5 0.5 0.2 0.2\n")
    assert _audit(data) == f"cvtriage: error: {label}:1: class id 5 out of range 0..2"
    label.write_text("0 0.5 0.5 1.2 0.2\n")
    assert _audit(data) == f"cvtriage: error: {label}:1: coordinates outside 0..1 (or empty box): '0 0.5 0.5 1.2 0.2'"


def test_cli_unknown_dataset_name():
    line = _audit("no-such-dataset-xyz")
    assert line.startswith("cvtriage: error: no-such-dataset-xyz: not a file, a folder, or a FiftyOne dataset name")


def test_cli_dataset_without_predictions_needs_weights(tmp_path):
    data = write_yolo_dataset(tmp_path, {"train": 1, "val": 1})
    name = _name()
    line = _audit(data, "--dataset", name)
    assert line == (f"cvtriage: error: FiftyOne dataset '{name}' has no 'predictions' to audit against; "
                    "pass --weights (a detector trained on these classes: car, person, boat)")

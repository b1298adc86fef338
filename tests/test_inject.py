"""inject-errors: exact and complete manifest, deterministic, counts that match the rate."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from yolo_factory import write_yolo_dataset

from cvtriage.audit.inject import (
    ERROR_KINDS,
    LOCATION_IOU,
    inject_errors,
    restore_labels,
    split_counts,
)
from cvtriage.boxes import iou_matrix
from cvtriage.cli import app
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import read_yolo_dataset


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    # 60 train images x 4 boxes = 240 boxes: a 10% rate is 24 errors, 6 per kind.
    return write_yolo_dataset(tmp_path_factory.mktemp("source"), {"train": 60, "val": 10}, seed=3)


def _label_lines(root, split="train"):
    return {p.relative_to(root): [l for l in p.read_text().splitlines() if l.strip()]
            for p in sorted((root / "labels" / split).glob("*.txt"))}


def test_restoring_the_manifest_originals_recovers_the_source_labels(source, tmp_path):
    result = inject_errors(source, tmp_path / "out", rate=0.1, seed=1)
    original = _label_lines(source.parent)
    corrupted = _label_lines(result.out_dir)
    restored = {**corrupted, **restore_labels(result.out_dir)}
    assert restored == original
    changed = {path for path in original if original[path] != corrupted[path]}
    assert changed == {p for p in restore_labels(result.out_dir)}  # every changed file is in the manifest


def test_manifest_points_at_the_injected_lines(source, tmp_path):
    result = inject_errors(source, tmp_path / "out", rate=0.1, seed=2)
    manifest = json.loads(result.manifest_path.read_text())
    assert len(manifest["errors"]) == len(result.errors) == 24
    for error in manifest["errors"]:
        assert (result.out_dir / error["image_path"]).is_file()
        lines = (result.out_dir / error["label_path"]).read_text().splitlines()
        if error["kind"] == "missing":
            assert error["line_index"] is None and error["original"] not in lines
        else:
            assert lines[error["line_index"]] == error["injected"]
        if error["kind"] == "class":
            assert error["injected"].split()[1:] == error["original"].split()[1:]
            assert error["injected"].split()[0] != error["original"].split()[0]
        if error["kind"] == "location":
            before = _xyxy(error["original"])
            after = _xyxy(error["injected"])
            assert LOCATION_IOU[0] <= iou_matrix([after], [before])[0, 0] <= LOCATION_IOU[1]
        if error["kind"] == "spurious":
            others = [_xyxy(line) for i, line in enumerate(lines) if i != error["line_index"]]
            assert not others or iou_matrix([_xyxy(error["injected"])], others).max() == 0


def _xyxy(line):
    cx, cy, w, h = map(float, line.split()[1:])
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_counts_per_kind_match_the_rate(source, tmp_path):
    result = inject_errors(source, tmp_path / "out", rate=0.05, seed=0)
    assert result.boxes_in_scope == 240
    assert result.counts() == {"class": 3, "missing": 3, "spurious": 3, "location": 3}
    only_two = inject_errors(source, tmp_path / "two", rate=0.1, kinds=("missing", "location"), seed=0)
    assert only_two.counts() == {"class": 0, "missing": 12, "spurious": 0, "location": 12}
    assert split_counts(10, ERROR_KINDS) == {"class": 3, "missing": 3, "spurious": 2, "location": 2}


def test_same_seed_same_errors_other_seed_other_errors(source, tmp_path):
    first = inject_errors(source, tmp_path / "a", rate=0.1, seed=5)
    again = inject_errors(source, tmp_path / "b", rate=0.1, seed=5)
    other = inject_errors(source, tmp_path / "c", rate=0.1, seed=6)
    assert first.errors == again.errors
    assert _label_lines(first.out_dir) == _label_lines(again.out_dir)
    assert first.errors != other.errors


def test_only_the_chosen_splits_change_and_images_are_linked(source, tmp_path):
    result = inject_errors(source, tmp_path / "out", rate=0.1, seed=1)
    assert {error.split for error in result.errors} == {"train"}
    assert _label_lines(result.out_dir, "val") == _label_lines(source.parent, "val")
    copied = read_yolo_dataset(result.data_yaml)
    assert {split: len(images) for split, images in copied.splits.items()} == {"train": 60, "val": 10}
    image = result.out_dir / result.errors[0].image_path
    assert image.stat().st_ino == (source.parent / result.errors[0].image_path).stat().st_ino

    both = inject_errors(source, tmp_path / "both", rate=0.1, splits=("train", "val"), seed=1)
    assert both.boxes_in_scope == 280 and {error.split for error in both.errors} == {"train", "val"}


def test_bad_requests_are_clear_errors(source, tmp_path):
    with pytest.raises(CvtriageError, match="unknown kind typo"):
        inject_errors(source, tmp_path / "x", kinds=("class", "typo"))
    with pytest.raises(CvtriageError, match="no 'test' split"):
        inject_errors(source, tmp_path / "x", splits=("test",))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("")
    with pytest.raises(CvtriageError, match="not empty"):
        inject_errors(source, tmp_path / "full")
    assert not (tmp_path / "x").exists()


def test_cli_inject_errors(source, tmp_path):
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(
        app, ["inject-errors", str(source), str(out), "--rate", "0.1", "--kinds", "class,spurious", "--seed", "4"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"class": 12, "missing": 0, "spurious": 12, "location": 0}
    bad = CliRunner().invoke(app, ["inject-errors", str(source), str(tmp_path / "y"), "--rate", "2"])
    assert bad.exit_code == 2 and "--rate 2.0" in bad.output and "Traceback" not in bad.output

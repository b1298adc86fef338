"""cvtriage train: one real (tiny, CPU) training run through the CLI, plus the parts around it:
exclusion of audited images, device choice, and bad datasets reported as one line."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner
from yolo_factory import NAMES, write_yolo_dataset

from cvtriage.cli import app
from cvtriage.cli.train import data_problems_table
from cvtriage.config import load_train_config
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import DataProblem, read_yolo_dataset
from cvtriage.models import resolve_device
from cvtriage.train.hardware import (
    GPU_BATCHES,
    MIN_ITERATIONS_PER_EPOCH,
    choose_hardware,
    training_batch,
)
from cvtriage.train.training import (
    ExclusionRule,
    check_training_dataset,
    next_run_dir,
    read_flagged_images,
    summarize_metrics,
    write_training_data,
)

runner = CliRunner()


def write_audit_csv(path: Path, rows: list[tuple[int, str, float]]) -> Path:
    """rows: (rank, image_path, score), in audit-labels' column layout."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "image_path", "label_index", "kind", "score"])
        for rank, image_path, score in rows:
            writer.writerow([rank, image_path, 0, "class", score])
    return path


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("cvtriage: error:")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


@pytest.fixture(scope="module")
def dataset_yaml(tmp_path_factory) -> Path:
    return write_yolo_dataset(tmp_path_factory.mktemp("shapes"), {"train": 6, "val": 2})


@pytest.fixture(scope="module")
def trained(dataset_yaml, tmp_path_factory):
    """One epoch from scratch at 64 px, excluding one flagged train image, with --save-to and an ONNX export."""
    work = tmp_path_factory.mktemp("train-run")
    root = dataset_yaml.parent
    audit_csv = write_audit_csv(
        work / "audit.csv",
        [(1, "images/train/train_002.jpg", 0.9), (2, str(root / "images/val/val_000.jpg"), 0.8)],
    )
    config = work / "shapes.yaml"
    # Some settings of a section (augment) and the optimizer settings, as a user continuing a model would.
    config.write_text(yaml.safe_dump({"names": NAMES, "optimizer": "AdamW", "lr0": 0.0005, "warmup_epochs": 0,
                                      "augment": {"flipud": 0.0}}))  # fmt: skip
    result = runner.invoke(
        app,
        [
            "train", str(root), "--config", str(config), "--weights", "yolo11n.yaml", "--epochs", "1",
            "--imgsz", "64", "--device", "cpu", "--out", str(work / "runs"), "--name", "tiny",
            "--save-to", str(work / "weights" / "tiny.pt"), "--exclude", str(audit_csv), "--export", "onnx",
        ],
    )
    return work, result


@pytest.mark.slow
def test_train_writes_weights_metrics_plots_and_copy(trained, dataset_yaml):
    work, result = trained
    assert result.exit_code == 0, result.output
    run_dir = work / "runs" / "tiny"
    best = run_dir / "weights" / "best.pt"
    assert best.is_file()
    assert (work / "weights" / "tiny.pt").read_bytes() == best.read_bytes()
    assert (run_dir / "weights" / "best.onnx").is_file()
    assert (run_dir / "results.csv").is_file() and (run_dir / "confusion_matrix.png").is_file()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["classes"]) == set(NAMES)
    val_instances = sum(len(image.boxes) for image in read_yolo_dataset(dataset_yaml).images("val"))
    assert sum(entry["instances"] for entry in metrics["classes"].values()) == val_instances
    for entry in metrics["classes"].values():
        assert set(entry) == {"images", "instances", "precision", "recall", "map50", "map50_95"}
    # The run's own final validation, as Ultralytics recorded it (one epoch from scratch sees
    # nothing yet: each figure is 0 here; test_metrics_are_ultralytics_validation_figure_by_figure
    # checks each lands in its place on a model that sees the objects).
    with (run_dir / "results.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    recorded = {name: float(last[f"metrics/{column}(B)"]) for name, column in
                (("precision", "precision"), ("recall", "recall"), ("map50", "mAP50"), ("map50_95", "mAP50-95"))}  # fmt: skip
    assert metrics["overall"] == pytest.approx(recorded, abs=1e-5)
    assert metrics["epochs_run"] == 1
    # The flagged train image is left out; the flagged val image stays (evaluation is untouched).
    assert metrics["excluded_images"] == [str((dataset_yaml.parent / "images/train/train_002.jpg").resolve())]
    assert metrics["train_images"] == 5 and metrics["val_images"] == 2
    assert "Excluded 1 of 6 training images" in result.output
    assert "mAP50" in result.output  # the summary table
    # How the run used the machine: speed always; on the CPU no GPU figures.
    usage = metrics["hardware_usage"]
    assert usage["images_per_second"] > 0 and metrics["batch"] == 16
    assert usage["gpu_utilisation"] == usage["peak_gpu_memory"] == "n/a" and usage["peak_gpu_memory_bytes"] is None
    [line] = [line for line in result.output.splitlines() if line.startswith("Speed: ")]
    assert f"{usage['images_per_second']:,.0f} images/s" in line and "GPU n/a; peak GPU memory n/a" in line
    # What Ultralytics trained with: the file's keys, and config/train.yaml's for the rest of augment.
    args = yaml.safe_load((run_dir / "args.yaml").read_text())
    assert (args["optimizer"], args["lr0"], args["warmup_epochs"]) == ("AdamW", 0.0005, 0)
    assert (args["flipud"], args["fliplr"], args["degrees"]) == (0.0, 0.5, 15.0)


@pytest.mark.slow
def test_metrics_are_ultralytics_validation_figure_by_figure(tmp_path):
    """metrics.json's figures (summarize_metrics) from a real validation whose figures are not 0:
    the demo model on synthetic images of its classes. Fails if two figures trade places
    (cvtriage.train.training, summarize_metrics: `precision, recall, map50, map50_95 = ...` ->
    `precision, recall, map50_95, map50 = ...`)."""
    from ultralytics import YOLO

    from cvtriage.paths import DEMO_WEIGHTS
    from cvtriage.synth.dataset import generate_dataset

    if not DEMO_WEIGHTS.is_file():
        pytest.skip(f"{DEMO_WEIGHTS} not present")
    data = generate_dataset(tmp_path / "synth", images=8, imgsz=320, seed=3, val_fraction=0.5, min_size=24,
                            max_size=100, workers=1)  # fmt: skip
    validation = YOLO(str(DEMO_WEIGHTS)).val(data=str(data.yaml_path), imgsz=320, batch=4, device="cpu", plots=False,
                                             verbose=False, project=str(tmp_path / "runs"), name="val")  # fmt: skip
    summary = summarize_metrics(validation, data.names)
    box = validation.box
    assert summary["overall"] == pytest.approx({"precision": box.mp, "recall": box.mr, "map50": box.map50, "map50_95": box.map})
    assert summary["overall"]["map50"] > 0.3 and summary["overall"]["map50"] > summary["overall"]["map50_95"] > 0
    assert len(validation.ap_class_index) >= 3  # figures for several classes
    for row, class_index in enumerate(validation.ap_class_index):
        entry = summary["classes"][data.names[int(class_index)]]
        assert entry["instances"] == int(validation.nt_per_class[class_index])
        assert (entry["precision"], entry["recall"], entry["map50"], entry["map50_95"]) == pytest.approx(
            (box.p[row], box.r[row], box.ap50[row], box.ap[row])
        )


def test_exclusion_removes_exactly_the_flagged_train_images(dataset_yaml, tmp_path):
    dataset = read_yolo_dataset(dataset_yaml)
    train = [image.image_path.resolve() for image in dataset.images("train")]
    val = [image.image_path.resolve() for image in dataset.images("val")]
    flagged = [train[0], train[3], val[1], tmp_path / "elsewhere.jpg"]

    data = write_training_data(dataset, tmp_path, flagged)

    assert data.excluded == [train[0], train[3]]
    assert data.flagged_outside_train == 1 and data.flagged_unknown == 1
    listed = [Path(line) for line in (tmp_path / "train-images.txt").read_text().splitlines()]
    assert listed == [image for image in train if image not in (train[0], train[3])]
    written = yaml.safe_load(data.data_yaml.read_text())
    assert written["train"] == str(tmp_path / "train-images.txt")
    assert written["val"] == "images/val" and Path(written["path"]) == dataset.root
    # Ultralytics reads the written data.yaml the same way: same val images, the kept train images.
    reread = read_yolo_dataset(data.data_yaml)
    assert [image.image_path.resolve() for image in reread.images("val")] == val
    assert [image.image_path for image in reread.images("train")] == listed


def test_without_exclusion_the_data_yaml_gets_an_absolute_path(dataset_yaml, tmp_path):
    dataset = read_yolo_dataset(dataset_yaml)
    data = write_training_data(dataset, tmp_path, None)
    written = yaml.safe_load(data.data_yaml.read_text())
    assert Path(written["path"]).is_absolute() and written["train"] == "images/train"
    assert not (tmp_path / "train-images.txt").exists()


def test_flagged_images_follow_rank_top_k_and_min_score(dataset_yaml, tmp_path):
    root = dataset_yaml.parent
    audit_csv = write_audit_csv(
        tmp_path / "audit.csv",
        [
            (3, "images/train/train_003.jpg", 0.4),
            (1, "images/train/train_001.jpg", 0.9),
            (2, "images/train/train_001.jpg", 0.7),  # a second suspect label in the same image
            (4, "images/train/train_004.jpg", 0.1),
        ],
    )
    train_001, train_003, train_004 = ((root / "images/train" / f"train_00{n}.jpg").resolve() for n in (1, 3, 4))

    assert read_flagged_images(ExclusionRule(audit_csv), root) == [train_001, train_003, train_004]
    assert read_flagged_images(ExclusionRule(audit_csv, top=2), root) == [train_001]
    assert read_flagged_images(ExclusionRule(audit_csv, min_score=0.4), root) == [train_001, train_003]


def test_audit_csv_from_another_dataset_is_an_error(dataset_yaml, tmp_path):
    dataset = read_yolo_dataset(dataset_yaml)
    with pytest.raises(CvtriageError, match="none of the 1 flagged images belongs"):
        write_training_data(dataset, tmp_path, [tmp_path / "other.jpg"])


def test_audit_csv_without_its_columns_is_a_one_line_error(dataset_yaml, tmp_path):
    bad_csv = tmp_path / "audit.csv"
    bad_csv.write_text("image,score\na.jpg,0.5\n")
    result = runner.invoke(app, ["train", str(dataset_yaml), "--exclude", str(bad_csv), "--device", "cpu"])
    assert_one_line_error(result, str(bad_csv), "missing column rank, image_path")


def test_cpu_hardware_defaults():
    hardware = choose_hardware("cpu", "auto", None, (1600, 400), 416)
    assert (hardware.device, hardware.batch, hardware.amp, hardware.workers, hardware.cache) == ("cpu", 16, False, 0, False)
    # A batch given is kept; loader workers stay 0 on the CPU, as Ultralytics would force anyway.
    assert (choose_hardware("cpu", 8, 3).batch, choose_hardware("cpu", 8, 3).workers) == (8, 0)
    # AutoBatch needs one CUDA GPU: a share of GPU memory on the CPU is the CPU's batch.
    assert choose_hardware("cpu", 0.6, None).batch == 16


def test_batch_auto_on_a_gpu_keeps_enough_iterations_an_epoch():
    # 1,600 training images: batch 32, as the H200 run that reached fresh-val mAP50 0.88 (AutoBatch's
    # ~1,000 left 2 optimizer steps an epoch).
    assert training_batch(1600) == 32
    assert [training_batch(n) for n in (50, 799, 800, 1599, 3199, 3200, 100_000)] == [16, 16, 16, 16, 32, 64, 64]
    for images in (800, 1600, 3200, 10_000):
        batch = training_batch(images)
        assert images / batch >= MIN_ITERATIONS_PER_EPOCH and batch in GPU_BATCHES


@pytest.mark.parametrize("given, read", [("auto", "auto"), ("32", 32), (32, 32), ("0.6", 0.6), (0.6, 0.6)])
def test_batch_is_a_number_of_images_auto_or_a_share_of_gpu_memory(given, read):
    assert load_train_config(batch=given).batch == read


@pytest.mark.parametrize("bad", ["many", "0", "1.5", "2048", "-1", "32.0"])
def test_a_bad_batch_is_one_line_naming_what_is_allowed(dataset_yaml, bad):
    result = runner.invoke(app, ["train", str(dataset_yaml), "--batch", bad])
    assert_one_line_error(result, "batch", "expected auto, a number of images from 1 to 1024, or a share of GPU memory")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(CvtriageError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert choose_hardware("auto", "auto", None).device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cli_device_cuda_without_a_gpu_is_one_line(dataset_yaml):
    result = runner.invoke(app, ["train", str(dataset_yaml), "--device", "cuda"])
    assert_one_line_error(result, "--device cuda", "no CUDA GPU")


@pytest.mark.parametrize("weights, reason", [("model.onnx", b"not a model"), ("notes.txt", b"not a model")])
def test_training_from_an_export_or_another_file_is_one_line(dataset_yaml, tmp_path, weights, reason):
    """Ultralytics opens an export, or a file of no format it knows, without reading it: training
    from one stopped with a traceback where the class names were first asked for."""
    (tmp_path / weights).write_bytes(reason)
    result = runner.invoke(app, ["train", str(dataset_yaml), "--weights", str(tmp_path / weights), "--epochs", "1"])
    assert_one_line_error(result, weights, "training starts from PyTorch weights (.pt) or a model .yaml")


def test_a_save_to_that_cannot_be_written_is_one_line_before_training(dataset_yaml, tmp_path):
    """Checked after the run, a --save-to inside a file failed with a traceback once training
    had finished."""
    (tmp_path / "notes.txt").write_text("not a folder")
    inside_a_file = tmp_path / "notes.txt" / "x.pt"
    result = runner.invoke(app, ["train", str(dataset_yaml), "--save-to", str(inside_a_file), "--out", str(tmp_path / "runs")])
    assert_one_line_error(result, "--save-to", "cannot make its folder")
    result = runner.invoke(app, ["train", str(dataset_yaml), "--save-to", str(tmp_path), "--out", str(tmp_path / "runs")])
    assert_one_line_error(result, f"--save-to {tmp_path}: a folder")
    assert not (tmp_path / "runs").exists()


def test_missing_data_yaml_key_is_one_line(tmp_path):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("train: images/train\nnames: [ladder]\n")
    result = runner.invoke(app, ["train", str(data_yaml)])
    assert_one_line_error(result, str(data_yaml), "missing key val")


def test_missing_split_folder_is_one_line(tmp_path):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("train: images/train\nval: images/val\nnames: [ladder]\n")
    result = runner.invoke(app, ["train", str(data_yaml)])
    assert_one_line_error(result, str(data_yaml), "does not exist")


def test_class_id_out_of_range_names_the_label_file(tmp_path):
    data_yaml = write_yolo_dataset(tmp_path, {"train": 2, "val": 1})
    label = tmp_path / "labels" / "train" / "train_001.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    result = runner.invoke(app, ["train", str(data_yaml), "--device", "cpu"])
    assert_one_line_error(result, f"{label}:5", "class id 7 out of range 0..2")


def test_missing_labels_and_broken_images_are_listed_before_training(tmp_path):
    data_yaml = write_yolo_dataset(tmp_path, {"train": 3, "val": 1})
    (tmp_path / "labels" / "train" / "train_000.txt").unlink()
    (tmp_path / "images" / "train" / "train_001.jpg").write_bytes(b"not a jpeg")
    # Missing weights stop the run after the dataset check, so nothing trains here.
    result = runner.invoke(app, ["train", str(data_yaml), "--weights", str(tmp_path / "none.pt"), "--device", "cpu"])
    assert_one_line_error(result, "none.pt", "weights file not found")
    assert "train_000.jpg" in result.stderr and "no label file" in result.stderr
    assert "train_001.jpg" in result.stderr and "cannot be decoded" in result.stderr


def test_problem_list_is_capped_with_a_count_of_the_rest(tmp_path):
    console = Console(record=True, width=200)
    problems = [DataProblem(tmp_path / f"image_{index}.jpg", "no label file") for index in range(13)]
    console.print(data_problems_table(problems, "Dataset problems", tmp_path))
    text = console.export_text()
    assert "image_9.jpg" in text and "image_10.jpg" not in text
    assert "... and 3 more" in text


def test_class_names_that_differ_from_the_config_are_warned(dataset_yaml, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("cvtriage"), "propagate", True)  # the CLI's log printer may have stopped it
    check_training_dataset(read_yolo_dataset(dataset_yaml), ["ladder", "fire extinguisher", "bag", "antenna"])
    assert "differ from the config's names" in caplog.text


def test_bad_settings_are_one_line(dataset_yaml):
    result = runner.invoke(app, ["train", str(dataset_yaml), "--batch", "many"])
    assert_one_line_error(result, "batch")
    result = runner.invoke(app, ["train", str(dataset_yaml), "--export", "tflite"])
    assert_one_line_error(result, "export")


def test_everyday_config_lists_the_four_synthetic_classes():
    config = load_train_config()
    assert config.names == ["ladder", "fire extinguisher", "bag", "antenna"]
    assert config.augment.flipud > 0 and config.augment.fliplr > 0


def test_an_existing_run_folder_is_never_reused(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp2").mkdir()
    assert next_run_dir(tmp_path, "exp") == (tmp_path / "exp3").resolve()
    assert next_run_dir(tmp_path, "new") == (tmp_path / "new").resolve()

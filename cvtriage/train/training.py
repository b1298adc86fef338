"""Training: fine-tune a YOLO detector on a YOLO-format dataset with Ultralytics.

The dataset is read and checked first (cvtriage.labels.yolo), so a broken data.yaml or label
file stops the run before any weights are loaded. Ultralytics gets a normalised copy of the data.yaml
in the run folder (an absolute `path`; with --exclude, a list of the kept training images), and
leaves its own outputs there: weights/best.pt, plots, results.csv. cvtriage adds metrics.json.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from cvtriage.config import TrainConfig
from cvtriage.errors import CvtriageError, first_line
from cvtriage.files import replaced_on_success, write_text_atomic
from cvtriage.labels.yolo import YoloDataset, read_yolo_dataset, require_readable_labels
from cvtriage.logs import quieted
from cvtriage.models import class_names, load_model
from cvtriage.progress import ProgressCallback
from cvtriage.train.gpu_usage import GpuUsage
from cvtriage.train.hardware import choose_hardware

logger = logging.getLogger(__name__)

# The columns of audit-labels' audit.csv that exclusion reads.
AUDIT_COLUMNS = ("rank", "image_path", "score")
@dataclass(frozen=True)
class ExclusionRule:
    """Which rows of an audit.csv to act on: the top K by rank, those scoring >= S, or (neither) all."""

    audit_csv: Path
    top: int | None = None
    min_score: float | None = None


@dataclass
class TrainingData:
    """The data.yaml handed to Ultralytics, and what exclusion left out of the train split."""

    data_yaml: Path
    train_images: int
    val_images: int
    excluded: list[Path] = field(default_factory=list)
    flagged_outside_train: int = 0  # flagged images in val/test: they stay, evaluation is untouched
    flagged_unknown: int = 0  # flagged images that are not in this dataset


@dataclass
class TrainResult:
    run_dir: Path
    best_weights: Path
    metrics_json: Path
    metrics: dict[str, Any]
    exports: dict[str, Path]
    saved_to: Path | None


def read_training_dataset(data: Path) -> YoloDataset:
    """The dataset with every image decoded: its `problems` list missing label files and
    undecodable images (warnings for the caller to show); check_training_dataset decides on the rest."""
    return read_yolo_dataset(Path(data), check_images=True)


def check_training_dataset(dataset: YoloDataset, expected_names: list[str]) -> None:
    """Unreadable label lines stop the run (Ultralytics would silently drop those images); class
    names that differ from the config's are a warning."""
    require_readable_labels(dataset)
    if [name.lower() for name in dataset.names] != [name.lower() for name in expected_names]:
        logger.warning(
            f"{dataset.yaml_path} names {dataset.names} differ from the config's "
            f"names {expected_names}; the model learns the data.yaml's classes"
        )


def read_flagged_images(rule: ExclusionRule, dataset_root: Path) -> list[Path]:
    """Images named by the chosen audit.csv rows, highest-ranked first, each once. A relative
    image_path is read from the dataset root."""
    path = Path(rule.audit_csv)
    if not path.is_file():
        raise CvtriageError(f"{path}: audit file not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in AUDIT_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise CvtriageError(f"{path}: not an audit-labels CSV (missing column {', '.join(missing)})")
        rows = []
        for row in reader:
            try:
                rows.append((int(row["rank"]), float(row["score"]), row["image_path"]))
            except (TypeError, ValueError):
                raise CvtriageError(f"{path}:{reader.line_num}: rank and score must be numbers") from None
    rows.sort(key=lambda row: row[0])
    if rule.top is not None:
        rows = rows[: rule.top]
    if rule.min_score is not None:
        rows = [row for row in rows if row[1] >= rule.min_score]
    flagged: dict[Path, None] = {}
    for _, _, image_path in rows:
        image = Path(image_path)
        flagged[(image if image.is_absolute() else dataset_root / image).resolve()] = None
    return list(flagged)


def write_training_data(dataset: YoloDataset, run_dir: Path, flagged: list[Path] | None) -> TrainingData:
    """Write the data.yaml Ultralytics trains on: the dataset's own, with an absolute `path` (Ultralytics
    reads a relative one from the working directory), and with flagged images left out of train only."""
    source = yaml.safe_load(dataset.yaml_path.read_text())
    config = {"path": str(dataset.root), **{key: value for key, value in source.items() if key != "path"}}
    train = dataset.images("train")
    result = TrainingData(run_dir / "data.yaml", train_images=len(train), val_images=len(dataset.images("val")))
    if flagged is not None:
        flagged_set = set(flagged)
        in_dataset = {image.image_path.resolve() for image in dataset.images("all")}
        kept = [image.image_path.resolve() for image in train if image.image_path.resolve() not in flagged_set]
        result.excluded = [image.image_path.resolve() for image in train if image.image_path.resolve() in flagged_set]
        result.flagged_unknown = sum(1 for image in flagged if image not in in_dataset)
        result.flagged_outside_train = len(flagged) - len(result.excluded) - result.flagged_unknown
        if flagged and result.flagged_unknown == len(flagged):
            raise CvtriageError(
                f"{flagged[0]}: none of the {len(flagged)} flagged images belongs to {dataset.yaml_path} "
                "(was the audit made on another dataset?)"
            )
        if not kept:
            raise CvtriageError(f"{dataset.yaml_path}: excluding the flagged images leaves no training images")
        write_text_atomic(run_dir / "train-images.txt", "".join(f"{image}\n" for image in kept))
        write_text_atomic(run_dir / "excluded-images.txt", "".join(f"{image}\n" for image in result.excluded))
        config["train"] = str(run_dir / "train-images.txt")
        result.train_images = len(kept)
    write_text_atomic(result.data_yaml, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return result


def next_run_dir(out: Path, name: str) -> Path:
    """out/name, or out/name2, name3... when it exists: an earlier run is never overwritten."""
    candidate, number = out / name, 2
    while candidate.exists():
        candidate, number = out / f"{name}{number}", number + 1
    return candidate.resolve()


class _ProgressOnly(logging.Filter):
    """Drop Ultralytics' info chatter (argument dumps, model summary, dataset scans, per-class tables)
    but keep warnings and the epoch header above its progress bars. A filter, not a level: Ultralytics
    hides its progress bars when the logger's level is above INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # cvtriage caches the images in RAM on a GPU knowingly (hardware.CACHE_MEMORY_SHARE; the
        # trade is in docs/training.md): Ultralytics' caveat would print on every run.
        if "cache='ram' may produce non-deterministic" in message:
            return False
        return record.levelno >= logging.WARNING or "GPU_mem" in message


@contextmanager
def quiet_ultralytics(bars: bool = True) -> Iterator[None]:
    """Ultralytics' warnings only, and (`bars`) its progress bars and their epoch header."""
    from ultralytics.utils import LOGGER

    progress_only = _ProgressOnly()
    LOGGER.addFilter(progress_only)
    try:
        with quieted(LOGGER.name, logging.INFO if bars else logging.WARNING):
            yield
    finally:
        LOGGER.removeFilter(progress_only)


def summarize_metrics(metrics, names: list[str]) -> dict[str, Any]:
    """Overall and per-class precision, recall, mAP50 and mAP50-95 from Ultralytics' DetMetrics.
    A class without validation instances gets null metrics."""
    precision, recall, map50, map50_95 = (float(value) for value in metrics.box.mean_results())
    per_class: dict[str, dict[str, Any]] = {
        name: {
            "images": int(metrics.nt_per_image[index]) if metrics.nt_per_image is not None else 0,
            "instances": int(metrics.nt_per_class[index]) if metrics.nt_per_class is not None else 0,
            "precision": None,
            "recall": None,
            "map50": None,
            "map50_95": None,
        }
        for index, name in enumerate(names)
    }
    for row, class_index in enumerate(metrics.ap_class_index):
        p, r, ap50, ap = (float(value) for value in metrics.class_result(row))
        per_class[names[int(class_index)]].update(precision=p, recall=r, map50=ap50, map50_95=ap)
    return {
        "overall": {"precision": precision, "recall": recall, "map50": map50, "map50_95": map50_95},
        "classes": per_class,
    }


def train(
    data: Path | YoloDataset,
    config: TrainConfig,
    exclusion: ExclusionRule | None = None,
    save_to: Path | None = None,
    run_dir: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Fine-tune config.weights on DATA (a data.yaml or a folder with one, or the dataset
    read_training_dataset read, whose problems the caller has shown) and write the run folder.
    Notes (the plan, each epoch's validation metrics) and warnings go to this module's logger.

    `run_dir`: the run folder to use (default: a new one under config.out); one holding the
    last.pt of a run that was stopped continues it (Ultralytics' resume). `on_progress(epochs
    done, epochs)`: given, it replaces Ultralytics' own progress bars."""
    import torch

    if save_to is not None:
        check_save_to(Path(save_to))
    dataset = data if isinstance(data, YoloDataset) else read_training_dataset(data)
    check_training_dataset(dataset, config.names)
    flagged = read_flagged_images(exclusion, dataset.root) if exclusion else None
    images = (len(dataset.images("train")), len(dataset.images("val")))
    hardware = choose_hardware(config.device, config.batch, config.workers, images, config.imgsz)
    last = None if run_dir is None else Path(run_dir) / "weights" / "last.pt"
    resuming = last is not None and last.is_file()
    model = load_model(last if resuming else config.weights)
    if isinstance(model.model, str):  # an export, or a file of no format Ultralytics knows: opened only to predict
        raise CvtriageError(f"{config.weights}: training starts from PyTorch weights (.pt) or a model .yaml, not an export or another file")
    moved = [(name, index, dataset.names.index(name)) for index, name in class_names(model).items()
             if name in dataset.names and dataset.names.index(name) != index]  # fmt: skip
    if moved and not resuming:
        name, old_id, new_id = moved[0]
        logger.warning(
            f"{dataset.yaml_path} numbers classes differently from {config.weights}: "
            f"'{name}' is {new_id} there, {old_id} in the model ({len(moved)} such classes); the model's "
            "class outputs start out meaning other classes, so it learns them again"
        )

    new_folder = run_dir is None or not Path(run_dir).exists()
    if run_dir is None:
        run_dir = next_run_dir(Path(config.out), config.name or dataset.yaml_path.parent.name or "train")
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        training_data = write_training_data(dataset, run_dir, flagged)
    except CvtriageError:
        if new_folder:
            shutil.rmtree(run_dir)  # nothing trained: leave no empty run behind
        raise
    if exclusion:
        message = (
            f"Excluded {len(training_data.excluded)} of {len(dataset.images('train'))} training images flagged in "
            f"{exclusion.audit_csv}"
        )
        if training_data.flagged_outside_train:
            message += f"; {training_data.flagged_outside_train} flagged val/test images stay"
        if training_data.flagged_unknown:
            message += f"; {training_data.flagged_unknown} flagged images are not in this dataset"
        logger.info(message)
    batch_text = f"AutoBatch ({hardware.batch:.0%} of GPU memory)" if isinstance(hardware.batch, float) else hardware.batch
    logger.info(
        f"Training {config.weights} on {training_data.train_images} images ({training_data.val_images} val) "
        f"for {config.epochs} epochs at {config.imgsz} px on {hardware.description}: batch {batch_text}, "
        f"AMP {'on' if hardware.amp else 'off'}, {hardware.workers} loader workers"
        f"{', images cached in RAM' if hardware.cache else ''} -> {run_dir}"
    )

    threads = _add_progress_callbacks(model, on_progress)
    clock = _EpochClock(model)
    usage = GpuUsage(int(hardware.device.split(",")[0])) if hardware.on_cuda else GpuUsage()
    if resuming:
        logger.info(f"Resuming the stopped run from {last}")
        # Ultralytics reads every other setting back from the checkpoint.
        arguments = {"resume": str(last), "data": str(training_data.data_yaml)}
    else:
        arguments = {
            "data": str(training_data.data_yaml), "epochs": config.epochs, "imgsz": config.imgsz, "amp": hardware.amp,
            "cache": "ram" if hardware.cache else False, "freeze": config.freeze, "patience": config.patience,
            "optimizer": config.optimizer, "lr0": config.lr0, "warmup_epochs": config.warmup_epochs,
            "seed": config.seed, "deterministic": True, "project": str(run_dir.parent), "name": run_dir.name,
            "exist_ok": True, "plots": True, **config.augment.model_dump(),
        }  # fmt: skip
    started = time.monotonic()
    try:
        with quiet_ultralytics(bars=on_progress is None), usage if hardware.on_cuda else nullcontext():
            metrics = model.train(batch=hardware.batch, device=hardware.device, workers=hardware.workers, **arguments)
    except torch.cuda.OutOfMemoryError as error:
        raise CvtriageError(
            f"{training_data.data_yaml}: the GPU ran out of memory ({str(error).splitlines()[0][:120]}); "
            "pass a smaller --batch or --imgsz"
        ) from None
    train_seconds = time.monotonic() - started
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)

    summary = {
        "data": str(dataset.yaml_path.resolve()),
        "weights": config.weights,
        "best_weights": str(best),
        "device": hardware.description,
        "batch": int(trainer.batch_size),
        "imgsz": config.imgsz,
        "epochs": config.epochs,
        "epochs_run": int(trainer.epoch) + 1,
        "seed": config.seed,
        "train_images": training_data.train_images,
        "val_images": training_data.val_images,
        "excluded_images": [str(image) for image in training_data.excluded],
        "train_seconds": round(train_seconds, 1),
        "torch_threads": threads,
        "hardware_usage": {
            # Training passes only (validation left out): images seen over the seconds they took.
            "images_per_second": round(training_data.train_images * clock.epochs / max(clock.seconds, 1e-9), 1),
            "gpu_utilisation": usage.utilisation_text(),
            "gpu_utilisation_percent": usage.mean_utilisation,
            "peak_gpu_memory": usage.memory_text(),
            "peak_gpu_memory_bytes": usage.peak_memory_bytes,
        },
        **summarize_metrics(metrics, dataset.names),
    }
    metrics_json = run_dir / "metrics.json"
    write_text_atomic(metrics_json, json.dumps(summary, indent=2))

    exports = export_model(best, config.export, config.imgsz)
    saved_to = None
    if save_to is not None:
        saved_to = Path(save_to)
        try:
            with replaced_on_success(saved_to) as partial:
                shutil.copyfile(best, partial)
        except OSError as error:  # the folder changed during training
            raise CvtriageError(f"--save-to {saved_to}: {error.strerror or error}; the trained weights are {best}") from None
    return TrainResult(run_dir, best, metrics_json, summary, exports, saved_to)


def check_save_to(path: Path) -> None:
    """--save-to, checked (and its folder made) before training: a copy that fails comes after the
    whole run."""
    if path.is_dir():
        raise CvtriageError(f"--save-to {path}: a folder; give the weights file's path, such as {path / 'mine.pt'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CvtriageError(f"--save-to {path}: cannot make its folder {path.parent} ({error.strerror or error})") from None
    if not os.access(path.parent, os.W_OK):
        raise CvtriageError(f"--save-to {path}: its folder {path.parent} is not writable")


def export_model(best: Path, formats: list[str], imgsz: int) -> dict[str, Path]:
    """Exports next to best.pt (best.onnx, best_openvino_model/) for fast CPU scanning."""
    exports: dict[str, Path] = {}
    for export_format in formats:
        with quiet_ultralytics(), warnings.catch_warnings():
            # torch's tracer warns about its own deprecations: nothing a user can act on.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                exported = load_model(best).export(format=export_format, imgsz=imgsz, device="cpu")
            except Exception as error:  # Ultralytics raises many types for a failed conversion
                reason = first_line(error)
                raise CvtriageError(f"{best}: trained, but the {export_format} export failed ({reason})") from None
        exports[export_format] = Path(exported)
    return exports


class _EpochClock:
    """The seconds Ultralytics spent in its training passes (each epoch's, without its validation)."""

    def __init__(self, model):
        self.seconds, self.epochs, self._started = 0.0, 0, 0.0
        model.add_callback("on_train_epoch_start", self._start)
        model.add_callback("on_train_epoch_end", self._end)

    def _start(self, trainer) -> None:
        self._started = time.perf_counter()

    def _end(self, trainer) -> None:
        self.seconds += time.perf_counter() - self._started
        self.epochs += 1


def _add_progress_callbacks(model, on_progress: ProgressCallback | None) -> int:
    """One logged line of validation metrics per epoch (Ultralytics' own lines are filtered out), and
    `on_progress(epochs done, epochs)`; keep the torch thread count resolve_device chose
    (Ultralytics resets it to cores-1 on the CPU). Returns it."""
    import torch

    threads = torch.get_num_threads()

    def keep_threads(trainer) -> None:
        if trainer.device.type == "cpu":
            torch.set_num_threads(threads)

    def print_epoch(trainer) -> None:
        if not trainer.validator.training:  # the final evaluation of best.pt: reported in the table
            return
        shown = {"mAP50": "metrics/mAP50(B)", "mAP50-95": "metrics/mAP50-95(B)",
                 "precision": "metrics/precision(B)", "recall": "metrics/recall(B)"}  # fmt: skip
        values = "  ".join(f"{label} {trainer.metrics.get(key, 0):.3f}" for label, key in shown.items())
        logger.info(f"epoch {trainer.epoch + 1}/{trainer.epochs}: {values}")
        if on_progress is not None:
            on_progress(trainer.epoch + 1, trainer.epochs, f"mAP50 {trainer.metrics.get(shown['mAP50'], 0):.3f}")

    model.add_callback("on_train_start", keep_threads)
    model.add_callback("on_fit_epoch_end", print_epoch)
    return threads

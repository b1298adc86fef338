"""Reviewed labels written back as a YOLO dataset: the last stage of the labels' path (dataset ->
predictions -> audit -> review in the App -> export), with the same class list, in the same
order, and the same splits, ready for `cvtriage train`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fiftyone as fo
from fiftyone import ViewField as F

from cvtriage.errors import CvtriageError
from cvtriage.files import replace_dir, replaceable_dir
from cvtriage.image_files import IMAGE_SUFFIXES
from cvtriage.labels.fiftyone_loading import GROUND_TRUTH
from cvtriage.labels.yolo import SPLIT_KEYS, label_path_for
from cvtriage.logs import quieted
from cvtriage.progress import ProgressCallback

# Reviewers tag a whole sample, or single labels, with this to keep them out of the export.
DEFAULT_SKIP_TAGS = ("reject",)


@dataclass
class SplitExport:
    split: str
    images: int = 0
    boxes: int = 0
    skipped_samples: int = 0
    skipped_labels: int = 0


@dataclass
class LabelExport:
    out_dir: Path
    yaml_path: Path
    names: list[str]
    splits: list[SplitExport] = field(default_factory=list)
    untagged_samples: int = 0  # samples with no split tag, left out


def _class_list(dataset: fo.Dataset, label_field: str) -> list[str]:
    classes = list(dataset.default_classes) or list(dataset.classes.get(label_field, []))
    if not classes:
        raise CvtriageError(
            f"dataset '{dataset.name}' has no class list (default_classes): the YOLO class ids would be guessed; "
            "set dataset.default_classes to the data.yaml names first"
        )
    return classes


def _check_label_field(dataset: fo.Dataset, label_field: str) -> None:
    schema = dataset.get_field_schema(embedded_doc_type=fo.Detections)
    if label_field not in schema:
        known = ", ".join(sorted(schema)) or "none"
        raise CvtriageError(
            f"dataset '{dataset.name}' has no detections field '{label_field}' (detections fields: {known})"
        )


def _splits_to_export(dataset: fo.Dataset, requested: list[str] | None) -> list[str]:
    counts = dataset.count_sample_tags()
    splits = requested or [split for split in SPLIT_KEYS if counts.get(split)]
    unknown = [split for split in splits if split not in SPLIT_KEYS]
    if unknown:
        raise CvtriageError(f"--splits: unknown split {', '.join(unknown)} (expected some of {', '.join(SPLIT_KEYS)})")
    for needed in ("train", "val"):
        if needed not in splits:
            raise CvtriageError(f"--splits: '{needed}' is required (Ultralytics trains on train and validates on val)")
        if not counts.get(needed):
            raise CvtriageError(f"dataset '{dataset.name}' has no samples tagged '{needed}'")
    return [split for split in SPLIT_KEYS if split in splits]


def _check_single_split(samples: fo.DatasetView, dataset_name: str) -> None:
    doubled = samples.match(F("tags").filter(F().is_in(list(SPLIT_KEYS))).length() > 1)
    if len(doubled):
        example = doubled.first().filepath
        raise CvtriageError(
            f"dataset '{dataset_name}': {len(doubled)} samples carry more than one split tag (e.g. {example}); "
            "a sample in two splits would leak between training and validation"
        )


def _check_known_labels(samples: fo.DatasetView, dataset_name: str, label_field: str, names: list[str]) -> None:
    # FiftyOne's exporter drops objects of an unknown class with a mere warning; a reviewer's
    # typo or new class must not vanish from the training data unnoticed.
    counts = samples.count_values(f"{label_field}.detections.label")
    unknown = {label: count for label, count in counts.items() if label not in names}
    if unknown:
        listed = ", ".join(f"'{label}' ({count})" for label, count in sorted(unknown.items(), key=lambda item: str(item[0])))
        raise CvtriageError(
            f"dataset '{dataset_name}': {label_field} has labels outside the class list {names}: {listed}; "
            "rename them or add the class to default_classes"
        )


def _write_empty_label_files(out_dir: Path, split: str) -> None:
    # FiftyOne writes no label file for a sample without labels; an empty one says "no objects"
    # explicitly, so readers do not report the image as unlabeled.
    for image_path in (out_dir / "images" / split).iterdir():
        if image_path.suffix.lower() in IMAGE_SUFFIXES:
            label_path = label_path_for(image_path)
            if not label_path.exists():
                label_path.parent.mkdir(parents=True, exist_ok=True)
                label_path.touch()


@contextmanager
def _quiet_fiftyone_export():
    # With a progress callback FiftyOne still draws its own text bar (the caller draws one), and it
    # warns that each split after the first is "merged" into the export folder, as intended.
    shown = fo.config.show_progress_bars
    fo.config.show_progress_bars = False
    try:
        with quieted("fiftyone.core.collections", logging.ERROR), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown classes, which it warns about, are ruled out before
            yield
    finally:
        fo.config.show_progress_bars = shown


# What export_reviewed_labels writes: a folder holding only these is one of its exports.
EXPORT_ENTRIES = {"data.yaml", "images", "labels"}


def _check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """An empty folder, or with `overwrite` a previous export, may be replaced; nothing else (a
    file, a folder of the user's own) is ever deleted."""
    if not replaceable_dir(out_dir, "data.yaml", only=EXPORT_ENTRIES):
        raise CvtriageError(f"{out_dir}: exists and is not a YOLO dataset this command wrote (data.yaml, images/, labels/ "
                            "and nothing else); choose another folder")  # fmt: skip
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise CvtriageError(f"{out_dir}: already exists (pass --overwrite to replace it)")


def export_reviewed_labels(
    dataset: fo.Dataset,
    out_dir: Path,
    label_field: str = GROUND_TRUTH,
    splits: list[str] | None = None,
    skip_tags: tuple[str, ...] | list[str] = DEFAULT_SKIP_TAGS,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
) -> LabelExport:
    """Write `dataset` as a YOLO dataset in out_dir: one data.yaml, images/<split>, labels/<split>.

    Class ids follow dataset.default_classes for every split (exporting splits one by one
    without an explicit class list numbers each split's classes differently: fiftyone#1952).
    Samples tagged with any of `skip_tags` are left out, and so are labels tagged with them.
    The export is written to a temporary folder beside out_dir and renamed when complete.
    on_progress(done, total) is called as images are written.
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir, overwrite)
    _check_label_field(dataset, label_field)
    names = _class_list(dataset, label_field)
    export_splits = _splits_to_export(dataset, splits)
    skip = list(skip_tags)

    result = LabelExport(out_dir=out_dir, yaml_path=out_dir / "data.yaml", names=names)
    result.untagged_samples = len(dataset.match_tags(list(SPLIT_KEYS), bool=False))
    views = {}
    for split in export_splits:
        in_split = dataset.match_tags(split)
        kept = in_split.match_tags(skip, bool=False) if skip else in_split
        summary = SplitExport(split=split, skipped_samples=len(in_split) - len(kept))
        boxes_before = kept.count(f"{label_field}.detections")
        if skip:
            kept = kept.filter_labels(label_field, ~F("tags").contains(skip), only_matches=False)
        summary.images = len(kept)
        summary.boxes = kept.count(f"{label_field}.detections")
        summary.skipped_labels = boxes_before - summary.boxes
        if summary.images == 0:
            raise CvtriageError(f"dataset '{dataset.name}': every '{split}' sample is tagged {', '.join(skip)}")
        views[split] = kept
        result.splits.append(summary)
    exported = dataset.match_tags(export_splits)
    exported = exported.match_tags(skip, bool=False).filter_labels(
        label_field, ~F("tags").contains(skip), only_matches=False
    ) if skip else exported  # fmt: skip
    _check_single_split(exported, dataset.name)
    _check_known_labels(exported, dataset.name, label_field, names)

    total, done = len(exported), 0
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for split, kept in views.items():
            with _quiet_fiftyone_export():
                kept.export(
                    export_dir=str(work_dir),
                    dataset_type=fo.types.YOLOv5Dataset,
                    label_field=label_field,
                    split=split,
                    classes=names,  # the same list for every split (fiftyone#1952)
                    yaml_path="data.yaml",
                    include_path=False,  # an absolute path would point at the temporary folder
                    export_media=True,
                    progress=(lambda bar, offset=done: on_progress(offset + bar.iteration, total)) if on_progress else False,
                )
            done += len(kept)
            _write_empty_label_files(work_dir, split)
        replace_dir(work_dir, out_dir)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return result

"""Label-error injection: a copy of a YOLO dataset with known label errors, to measure an audit.

`cvtriage inject-errors` copies a dataset (images hard-linked when the filesystem allows, label
files rewritten) and corrupts a fraction of its boxes, in four kinds:

- class:    a box given another class;
- missing:  a box deleted (the object stays in the image, unlabelled);
- spurious: a new box where there is no object (it touches no labelled box);
- location: a box moved and/or resized so its IoU with the original falls in LOCATION_IOU.

OUT/manifest.json records every change (split, image, label file, line index after injection,
the original line), so `audit-labels` can be scored against it and the source labels can be
recovered exactly. Lines that were not changed are copied verbatim.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cvtriage.boxes import cxcywh_to_xyxy, iou_matrix, xyxy_to_cxcywh
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import (
    LabelBox,
    LabeledImage,
    read_yolo_dataset,
    require_readable_labels,
    write_data_yaml,
)
from cvtriage.progress import ProgressCallback, no_progress

ERROR_KINDS = ("class", "missing", "spurious", "location")
# A moved box must be clearly wrong (IoU below the usual 0.5 match threshold) yet still about
# the same object (IoU above 0.1), or it would be a missing box plus a spurious one.
LOCATION_IOU = (0.1, 0.5)
# A moved box must not land on another labelled object.
MAX_IOU_WITH_OTHERS = 0.1
PLACEMENT_TRIES = 200
MANIFEST_NAME = "manifest.json"


@dataclass
class InjectedError:
    kind: str
    split: str
    image_path: str  # relative to the output folder
    label_path: str  # relative to the output folder
    line_index: int | None  # 0-based line in the written label file; None for a deleted box
    original_line_index: int | None  # 0-based line in the source label file; None for a spurious box
    original: str | None  # the source line; None for a spurious box
    injected: str | None  # the written line; None for a deleted box
    iou: float | None = None  # location errors: IoU of the written box with the original


@dataclass
class InjectionResult:
    out_dir: Path
    data_yaml: Path
    manifest_path: Path
    errors: list[InjectedError]
    boxes_in_scope: int  # boxes in the chosen splits, the base of `rate`

    def counts(self) -> dict[str, int]:
        return {kind: sum(error.kind == kind for error in self.errors) for kind in ERROR_KINDS}


@dataclass
class _ImageEdit:
    """The changes planned for one label file, applied when the copy is written."""

    lines: list[str]  # the source's non-empty lines, verbatim
    replaced: dict[int, tuple[str, InjectedError]]
    deleted: dict[int, InjectedError]
    added: list[tuple[str, InjectedError]]

    def occupied(self) -> list[tuple[float, float, float, float]]:
        """Every box an injected box must keep clear of: all source boxes and every written box."""
        boxes = [LabelBox.from_line(line).xyxy for line in self.lines]
        boxes += [LabelBox.from_line(line).xyxy for line, _ in self.replaced.values()]
        boxes += [LabelBox.from_line(line).xyxy for line, _ in self.added]
        return boxes


def split_counts(total: int, kinds: tuple[str, ...]) -> dict[str, int]:
    """`total` errors split as evenly as possible, the remainder to the first kinds."""
    base, remainder = divmod(total, len(kinds))
    return {kind: base + (index < remainder) for index, kind in enumerate(kinds)}


def inject_errors(
    source: Path,
    out: Path,
    rate: float = 0.05,
    kinds: tuple[str, ...] = ERROR_KINDS,
    splits: tuple[str, ...] = ("train",),
    seed: int = 0,
    on_progress: ProgressCallback = no_progress,
) -> InjectionResult:
    """Copy the YOLO dataset at `source` to `out` with `rate` x (boxes in `splits`) label errors.
    on_progress(done, total) is called as images are copied."""
    kinds = tuple(dict.fromkeys(kinds))  # a kind named twice is one kind
    unknown = [kind for kind in kinds if kind not in ERROR_KINDS]
    if unknown or not kinds:
        raise CvtriageError(f"--kinds: unknown kind {', '.join(unknown) or '(none)'}; choose from {', '.join(ERROR_KINDS)}")
    if not 0 < rate <= 0.5:
        raise CvtriageError(f"--rate {rate}: expected a fraction of boxes in (0, 0.5]")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CvtriageError(f"{out}: already exists and is not empty; choose a new output folder")
    dataset = read_yolo_dataset(source)
    require_readable_labels(dataset)
    missing_splits = [split for split in splits if split not in dataset.splits]
    if missing_splits:
        raise CvtriageError(
            f"{dataset.yaml_path}: no '{missing_splits[0]}' split to inject into (it has {', '.join(dataset.splits)})"
        )
    if "class" in kinds and len(dataset.names) < 2:
        raise CvtriageError(f"{dataset.yaml_path}: one class only, so no class to swap to; leave 'class' out of --kinds")

    rng = random.Random(seed)
    targets = [image for split in splits for image in dataset.splits[split]]
    edits = {(image.split, image.image_path): _ImageEdit(_label_lines(image), {}, {}, []) for image in targets}
    relative = _output_paths(dataset.splits)
    boxes_in_scope = sum(len(image.boxes) for image in targets)
    counts = split_counts(round(rate * boxes_in_scope), kinds)

    errors: list[InjectedError] = []
    candidates = [(image, index) for image in targets for index in range(len(image.boxes))]
    rng.shuffle(candidates)
    box_kinds = [kind for kind in ("class", "missing", "location") for _ in range(counts.get(kind, 0))]
    rng.shuffle(box_kinds)  # interleaved, so no kind gets only the boxes left over by another
    for kind in box_kinds:
        while candidates:
            image, index = candidates.pop()
            error = _corrupt_box(kind, image, index, edits[(image.split, image.image_path)], relative, dataset.names, rng)
            if error is not None:
                errors.append(error)
                break
        else:
            raise CvtriageError(f"{dataset.yaml_path}: too few boxes in {', '.join(splits)} for --rate {rate}")
    sizes = [(box.w, box.h) for image in targets for box in image.boxes]
    for _ in range(counts.get("spurious", 0)):
        error = _add_spurious_box(targets, edits, relative, len(dataset.names), sizes, rng)
        if error is None:
            raise CvtriageError(f"{dataset.yaml_path}: no free space left for spurious boxes at --rate {rate}")
        errors.append(error)

    # Written in a temporary folder next to `out`, renamed when complete.
    temporary = out.parent / f".{out.name}.partial"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(temporary, ignore_errors=True)
    _write_copy(dataset, temporary, edits, relative, on_progress)
    manifest = {
        "source": str(dataset.yaml_path.resolve()),
        "seed": seed,
        "rate": rate,
        "kinds": list(kinds),
        "splits": list(splits),
        "boxes_in_scope": boxes_in_scope,
        "counts": {kind: counts.get(kind, 0) for kind in ERROR_KINDS},
        "location_iou": list(LOCATION_IOU),
        "errors": [asdict(error) for error in errors],
    }
    (temporary / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    if out.exists():
        out.rmdir()  # checked empty above
    temporary.rename(out)
    return InjectionResult(out, out / "data.yaml", out / MANIFEST_NAME, errors, boxes_in_scope)


def _label_lines(image: LabeledImage) -> list[str]:
    if not image.has_label_file:
        return []
    return [line for line in image.label_path.read_text().splitlines() if line.strip()]


def _output_paths(splits: dict[str, list[LabeledImage]]) -> dict[tuple[str, Path], tuple[str, str]]:
    """(split, source image) -> (image, label) paths in the copy, relative to its folder. Each
    split keeps its images' sub-folders below their common parent, so names cannot collide."""
    relative = {}
    for split, images in splits.items():
        common = Path(os.path.commonpath([str(image.image_path.parent) for image in images]))
        for image in images:
            inner = image.image_path.relative_to(common)
            relative[(split, image.image_path)] = (
                str(Path("images", split, inner)),
                str(Path("labels", split, inner).with_suffix(".txt")),
            )
    return relative


def _corrupt_box(kind, image, index, edit, relative, names, rng) -> InjectedError | None:
    original = edit.lines[index]
    image_rel, label_rel = relative[(image.split, image.image_path)]
    error = InjectedError(kind, image.split, image_rel, label_rel, None, index, original, None)
    if kind == "missing":
        edit.deleted[index] = error
        return error
    class_id, *coordinates = original.split()
    if kind == "class":
        new_class = rng.choice([other for other in range(len(names)) if other != int(class_id)])
        error.injected = " ".join([str(new_class), *coordinates])
    else:
        moved = moved_box(LabelBox.from_line(original).xyxy, [box for i, box in enumerate(edit.occupied()) if i != index], rng)
        if moved is None:
            return None
        box, iou = moved
        error.injected, error.iou = LabelBox.from_xyxy(int(class_id), box).to_line(), round(iou, 4)
    edit.replaced[index] = (error.injected, error)
    return error


def moved_box(original, others, rng):
    """A shifted and/or resized copy of `original` inside the image, IoU with it in LOCATION_IOU."""
    centre_x, centre_y, w, h = xyxy_to_cxcywh(original).tolist()
    for _ in range(PLACEMENT_TRIES):
        new_w = min(w * np.exp(rng.uniform(-0.9, 0.9)), 1.0)
        new_h = min(h * np.exp(rng.uniform(-0.9, 0.9)), 1.0)
        cx = centre_x + rng.uniform(-1, 1) * w
        cy = centre_y + rng.uniform(-1, 1) * h
        box = tuple(cxcywh_to_xyxy((cx, cy, new_w, new_h)).tolist())
        if min(box) < 0 or max(box) > 1:
            continue
        iou = float(iou_matrix([box], [original])[0, 0])
        if not LOCATION_IOU[0] <= iou <= LOCATION_IOU[1]:
            continue
        if others and iou_matrix([box], others).max() > MAX_IOU_WITH_OTHERS:
            continue
        return box, iou
    return None


def _add_spurious_box(targets, edits, relative, class_count, sizes, rng) -> InjectedError | None:
    """A box of a size seen in the dataset, placed in a random image where it touches no box."""
    for _ in range(PLACEMENT_TRIES):
        image = rng.choice(targets)
        edit = edits[(image.split, image.image_path)]
        w, h = rng.choice(sizes) if sizes else (0.1, 0.1)
        x1, y1 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        box = (x1, y1, x1 + w, y1 + h)
        occupied = edit.occupied()
        if occupied and iou_matrix([box], occupied).max() > 0:
            continue
        image_rel, label_rel = relative[(image.split, image.image_path)]
        line = LabelBox.from_xyxy(rng.randrange(class_count), box).to_line()
        error = InjectedError("spurious", image.split, image_rel, label_rel, None, None, None, line)
        edit.added.append((line, error))
        return error
    return None


def _write_copy(dataset, temporary: Path, edits, relative, on_progress: ProgressCallback) -> None:
    images = [image for split_images in dataset.splits.values() for image in split_images]
    for done, image in enumerate(images, start=1):
        image_rel, label_rel = relative[(image.split, image.image_path)]
        _link_or_copy(image.image_path, temporary / image_rel)
        edit = edits.get((image.split, image.image_path))
        label_out = temporary / label_rel
        label_out.parent.mkdir(parents=True, exist_ok=True)
        if edit is not None:
            lines = _apply_edit(edit)
            if lines or image.has_label_file:
                label_out.write_text("".join(f"{line}\n" for line in lines))
        elif image.has_label_file:
            shutil.copyfile(image.label_path, label_out)
        on_progress(done, len(images))
    write_data_yaml(temporary, dataset.names, {split: f"images/{split}" for split in dataset.splits})


def _apply_edit(edit: _ImageEdit) -> list[str]:
    """The written lines; fills in each error's line index in the written file."""
    written = []
    for index, line in enumerate(edit.lines):
        if index in edit.deleted:
            continue
        if index in edit.replaced:
            line, error = edit.replaced[index]
            error.line_index = len(written)
        written.append(line)
    for line, error in edit.added:
        error.line_index = len(written)
        written.append(line)
    return written


def _link_or_copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, destination)


def restore_labels(out: Path) -> dict[Path, list[str]]:
    """The source's label lines recovered from the copy at `out` and its manifest: label path
    (relative to `out`) -> lines. The inverse of inject_errors, used to check a manifest is complete."""
    manifest = json.loads((Path(out) / MANIFEST_NAME).read_text())
    by_file: dict[str, list[dict]] = {}
    for error in manifest["errors"]:
        by_file.setdefault(error["label_path"], []).append(error)
    restored = {}
    for label_rel, file_errors in by_file.items():
        lines = [line for line in (Path(out) / label_rel).read_text().splitlines() if line.strip()]
        for error in file_errors:
            if error["kind"] in ("class", "location"):
                lines[error["line_index"]] = error["original"]
        added = sorted((e["line_index"] for e in file_errors if e["kind"] == "spurious"), reverse=True)
        for line_index in added:
            del lines[line_index]
        deleted = sorted((e for e in file_errors if e["kind"] == "missing"), key=lambda e: e["original_line_index"])
        for error in deleted:
            lines.insert(error["original_line_index"], error["original"])
        restored[Path(label_rel)] = lines
    return restored

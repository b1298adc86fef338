"""Datasets: reading and checking a YOLO-format dataset (data.yaml, images/, labels/), and loading
a YOLO dataset, a COCO JSON or an existing dataset into a persistent FiftyOne dataset.

Shared by `train`, `audit-labels` and `inject-errors`, so each reports the same problems the
same way: fatal ones (missing keys or paths) raise a CvtriageError naming the file; problems
in single label files are collected, each naming the file and line, for the caller to report.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from cvtriage.errors import CvtriageError

# Problems listed in full; the rest are counted (a broken dataset can have thousands).
PROBLEMS_SHOWN = 10
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_KEYS = ("train", "val", "test")
UNDECODABLE_IMAGE = "image cannot be decoded"


@dataclass(frozen=True)
class LabelBox:
    """One line of a YOLO label file: class id and normalised centre-x, centre-y, width, height."""

    class_id: int
    cx: float
    cy: float
    w: float
    h: float
    line: int  # 1-based line number in the label file

    @classmethod
    def from_line(cls, text: str, line: int = 0) -> LabelBox:
        """A label line already checked by parse_label_file, back into a box."""
        class_id, cx, cy, w, h = text.split()
        return cls(int(class_id), float(cx), float(cy), float(w), float(h), line)

    @classmethod
    def from_xyxy(cls, class_id: int, box: tuple[float, float, float, float], line: int = 0) -> LabelBox:
        x1, y1, x2, y2 = box
        return cls(class_id, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, line)

    def to_line(self) -> str:
        return f"{self.class_id} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.cx - self.w / 2, self.cy - self.h / 2, self.cx + self.w / 2, self.cy + self.h / 2)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), both x1 y1 x2 y2. Scaling x and y
    by different factors leaves IoU unchanged, so normalised coordinates give pixel IoU."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


@dataclass
class LabeledImage:
    image_path: Path
    label_path: Path
    split: str
    boxes: list[LabelBox]
    has_label_file: bool


@dataclass(frozen=True)
class DataProblem:
    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class YoloDataset:
    yaml_path: Path
    root: Path
    names: list[str]
    splits: dict[str, list[LabeledImage]]
    problems: list[DataProblem] = field(default_factory=list)

    def images(self, split: str = "all") -> list[LabeledImage]:
        if split == "all":
            return [image for images in self.splits.values() for image in images]
        if split not in self.splits:
            raise CvtriageError(f"{self.yaml_path}: no '{split}' split (it has {', '.join(self.splits)})")
        return self.splits[split]


def label_path_for(image_path: Path) -> Path:
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, the suffix .txt."""
    images_part, labels_part = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image_path)
    if images_part in text:
        text = labels_part.join(text.rsplit(images_part, 1))
    return Path(text).with_suffix(".txt")


def find_data_yaml(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if not candidates:
            raise CvtriageError(f"{path}: no data.yaml in this folder")
        preferred = [c for c in candidates if c.stem in ("data", "dataset")]
        return (preferred or candidates)[0]
    if not path.exists():
        raise CvtriageError(f"{path}: file not found")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise CvtriageError(f"{path}: expected a YOLO data.yaml or a dataset folder")
    return path


def read_names(raw, yaml_path: Path) -> list[str]:
    if isinstance(raw, dict):
        try:
            ordered = sorted((int(key), str(value)) for key, value in raw.items())
        except (TypeError, ValueError):
            raise CvtriageError(f"{yaml_path}: 'names' keys must be class ids 0..N-1") from None
        if [index for index, _ in ordered] != list(range(len(ordered))):
            raise CvtriageError(f"{yaml_path}: 'names' ids must run 0..{len(ordered) - 1} without gaps")
        return [name for _, name in ordered]
    if isinstance(raw, list) and raw:
        return [str(name) for name in raw]
    raise CvtriageError(f"{yaml_path}: 'names' must be a non-empty list or a mapping of id: name")


def _images_of(entry, root: Path, yaml_path: Path, split: str) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        location = Path(str(item))
        location = location if location.is_absolute() else root / location
        if location.is_dir():
            images += sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif location.is_file() and location.suffix == ".txt":
            for line in location.read_text().splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    images.append(listed if listed.is_absolute() else (location.parent / listed).resolve())
        elif location.is_file() and location.suffix.lower() in IMAGE_SUFFIXES:
            images.append(location)
        else:
            raise CvtriageError(f"{yaml_path}: '{split}' path {location} does not exist")
    return images


def parse_label_file(label_path: Path, class_count: int) -> tuple[list[LabelBox], list[DataProblem]]:
    boxes: list[LabelBox] = []
    problems: list[DataProblem] = []
    for number, line in enumerate(label_path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            # Segment polygons (more than 5 values) are not boxes: say so rather than guess.
            problems.append(DataProblem(label_path, f"expected 5 values (class cx cy w h), found {len(parts)}", number))
            continue
        try:
            class_id = int(parts[0])
            cx, cy, w, h = (float(value) for value in parts[1:])
        except ValueError:
            problems.append(DataProblem(label_path, f"not numbers: {line.strip()!r}", number))
            continue
        if not 0 <= class_id < class_count:
            problems.append(DataProblem(label_path, f"class id {class_id} out of range 0..{class_count - 1}", number))
            continue
        if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
            problems.append(DataProblem(label_path, f"coordinates outside 0..1 (or empty box): {line.strip()!r}", number))
            continue
        boxes.append(LabelBox(class_id, cx, cy, w, h, number))
    return boxes, problems


def read_yolo_dataset(path: Path, check_images: bool = False) -> YoloDataset:
    """Read data.yaml and every label file. check_images also decodes each image (slower)."""
    yaml_path = find_data_yaml(Path(path))
    try:
        config = yaml.safe_load(yaml_path.read_text()) or {}
    except yaml.YAMLError:
        raise CvtriageError(f"{yaml_path}: not valid YAML") from None
    if not isinstance(config, dict):
        raise CvtriageError(f"{yaml_path}: expected a mapping with 'train', 'val' and 'names'")
    missing = [key for key in ("train", "val", "names") if key not in config]
    if missing:
        raise CvtriageError(f"{yaml_path}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    names = read_names(config["names"], yaml_path)
    # A relative `path` is read from the yaml's folder (Ultralytics would use the working directory:
    # train.py hands Ultralytics a copy with this absolute root, so both agree).
    root = Path(str(config.get("path") or "."))
    root = root if root.is_absolute() else (yaml_path.parent / root).resolve()
    if not root.is_dir():
        raise CvtriageError(f"{yaml_path}: dataset path {root} does not exist")

    dataset = YoloDataset(yaml_path=yaml_path, root=root, names=names, splits={})
    for split in SPLIT_KEYS:
        if not config.get(split):
            continue
        images = []
        for image_path in _images_of(config[split], root, yaml_path, split):
            label_path = label_path_for(image_path)
            boxes: list[LabelBox] = []
            if label_path.is_file():
                boxes, problems = parse_label_file(label_path, len(names))
                dataset.problems += problems
            else:
                dataset.problems.append(DataProblem(image_path, "no label file (treated as an image with no objects)"))
            if check_images and not _decodes(image_path):
                dataset.problems.append(DataProblem(image_path, UNDECODABLE_IMAGE))
                continue
            images.append(LabeledImage(image_path, label_path, split, boxes, label_path.is_file()))
        if not images:
            raise CvtriageError(f"{yaml_path}: '{split}' split has no images")
        dataset.splits[split] = images
    return dataset


def _decodes(image_path: Path) -> bool:
    import cv2

    try:
        return cv2.imread(str(image_path), cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None
    except cv2.error:
        return False


def write_data_yaml(out_dir: Path, names: list[str], splits: dict[str, str]) -> Path:
    """A data.yaml without `path`: Ultralytics then resolves splits from the yaml's own folder
    (a relative `path` it would resolve from the working directory), so the dataset can move whole."""
    out_dir.mkdir(parents=True, exist_ok=True)
    yaml_path = out_dir / "data.yaml"
    content = {**splits, "names": {index: name for index, name in enumerate(names)}}
    yaml_path.write_text(yaml.safe_dump(content, sort_keys=False))
    return yaml_path


def require_readable_labels(dataset: YoloDataset) -> None:
    """Stop on label lines that cannot be read (format, class id, coordinates): auditing or
    corrupting a dataset whose labels are partly unreadable would silently skip those labels."""
    unreadable = [problem for problem in dataset.problems if problem.line is not None]
    if unreadable:
        more = f" (and {len(unreadable) - 1} more label problems)" if len(unreadable) > 1 else ""
        raise CvtriageError(f"{unreadable[0]}{more}")


# --- FiftyOne -------------------------------------------------------------------------------
# Conventions shared with scan and review: persistent datasets, labels in `ground_truth`, splits
# as sample tags, class order in `default_classes`, the source data.yaml in info["data_yaml"].

GROUND_TRUTH = "ground_truth"


@dataclass
class LoadedDataset:
    dataset: "fo.Dataset"  # noqa: F821 (fiftyone is imported lazily: it starts a database)
    problems: list[DataProblem]  # images left out (cannot be decoded) and other warnings


def default_dataset_name(source: str | Path) -> str:
    """cvtriage-<dataset folder> for a YOLO dataset, cvtriage-<json stem> for COCO, else the name itself."""
    path = Path(source)
    if path.suffix.lower() == ".json":
        return f"cvtriage-{path.stem}"
    if path.exists():
        return f"cvtriage-{find_data_yaml(path).resolve().parent.name}"
    return str(source)


def load_into_fiftyone(
    source: str | Path, name: str | None = None, images_dir: Path | None = None, strict: bool = False
) -> LoadedDataset:
    """A persistent FiftyOne dataset holding `source`: a YOLO data.yaml or folder, a COCO JSON
    (images in `images_dir`, else an `images` folder or the JSON's folder), or the name of an
    existing FiftyOne dataset. Re-loading the same files updates the samples (keyed by filepath).
    Images that are listed but absent or cannot be decoded are left out and returned as problems;
    `strict`: stop with the first of them instead."""
    import fiftyone as fo

    path = Path(source)
    if path.suffix.lower() == ".json":
        samples, classes, info, problems = _coco_samples(path, images_dir)
    elif path.exists():
        samples, classes, info, problems = _yolo_samples(path)
    else:
        if not fo.dataset_exists(str(source)):
            known = ", ".join(fo.list_datasets()) or "none"
            raise CvtriageError(
                f"{source}: not a file, a folder, or a FiftyOne dataset name (FiftyOne datasets here: {known})"
            )
        dataset = fo.load_dataset(str(source))
        _require_ground_truth(dataset)
        if not dataset.default_classes:
            dataset.default_classes = sorted(dataset.distinct(f"{GROUND_TRUTH}.detections.label"))
            dataset.save()
        return LoadedDataset(dataset, [])
    if strict and problems:
        more = f" (and {len(problems) - 1} more images)" if len(problems) > 1 else ""
        raise CvtriageError(f"{problems[0]}{more}; --strict stops here (without it, the other images are audited)")
    if not samples:
        raise CvtriageError(f"{source}: no readable images")

    name = name or default_dataset_name(source)
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    dataset.persistent = True
    filepaths = [sample.filepath for sample in samples]
    # Samples whose image left the source are dropped, so the dataset mirrors the files.
    stale = dataset.exists("filepath").match(~fo.ViewField("filepath").is_in(filepaths))
    if len(stale):
        dataset.delete_samples(stale)
    # merge_samples logs an index conversion on every call: not news for a user.
    collections_logger = logging.getLogger("fiftyone.core.collections")
    level = collections_logger.level
    collections_logger.setLevel(logging.WARNING)
    try:
        dataset.merge_samples(samples, key_field="filepath", merge_lists=False, overwrite=True, progress=False)
    finally:
        collections_logger.setLevel(level)
    dataset.default_classes = classes
    dataset.info.update(info)
    dataset.save()
    return LoadedDataset(dataset, problems)


def _require_ground_truth(dataset) -> None:
    import fiftyone as fo

    field = dataset.get_field(GROUND_TRUTH)
    if field is None or getattr(field, "document_type", None) is not fo.Detections:
        raise CvtriageError(f"FiftyOne dataset {dataset.name!r}: no '{GROUND_TRUTH}' field of detections to audit")


def _yolo_samples(path: Path):
    import fiftyone as fo

    yolo = read_yolo_dataset(path, check_images=True)
    require_readable_labels(yolo)
    samples = []
    for image in yolo.images("all"):
        detections = [
            fo.Detection(
                label=yolo.names[box.class_id],
                bounding_box=[box.cx - box.w / 2, box.cy - box.h / 2, box.w, box.h],
                label_index=box.line - 1,
            )
            for box in image.boxes
        ]
        samples.append(
            fo.Sample(
                filepath=str(image.image_path.resolve()),
                tags=[image.split],
                label_path=str(image.label_path.resolve()),
                **{GROUND_TRUTH: fo.Detections(detections=detections)},
            )
        )
    skipped = [problem for problem in yolo.problems if problem.message == UNDECODABLE_IMAGE]
    return samples, yolo.names, {"data_yaml": str(yolo.yaml_path.resolve())}, skipped


def _coco_samples(json_path: Path, images_dir: Path | None):
    import json

    import fiftyone as fo

    if not json_path.is_file():
        raise CvtriageError(f"{json_path}: file not found")
    try:
        content = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CvtriageError(f"{json_path}: not valid JSON ({error})") from None
    if not isinstance(content, dict) or not {"images", "annotations", "categories"} <= set(content):
        raise CvtriageError(f"{json_path}: not a COCO detection file (needs 'images', 'annotations', 'categories')")
    if images_dir is None:
        images_dir = json_path.parent / "images" if (json_path.parent / "images").is_dir() else json_path.parent
    if not Path(images_dir).is_dir():
        raise CvtriageError(f"{images_dir}: images folder not found (give it with --images)")
    classes = [str(c["name"]) for c in sorted(content["categories"], key=lambda category: category["id"])]
    # FiftyOne's importer stops at the first listed image it cannot find (a KeyError naming the
    # file): find them all first, name them, and import a copy of the file without them.
    listed = [str(image.get("file_name", "")) for image in content["images"] if isinstance(image, dict)]
    absent = {name for name in listed if not (Path(images_dir) / name).is_file()}
    problems = [DataProblem(json_path, f"lists {name}, which is not in {images_dir}") for name in sorted(absent)]
    if listed and len(absent) == len(listed):
        raise CvtriageError(
            f"{json_path}: none of its {len(listed)} images is in {images_dir} (the first: {listed[0]}); "
            "give the images folder with --images"
        )
    with tempfile.TemporaryDirectory(prefix="cvtriage-coco-") as temporary:
        labels_path = json_path
        if absent:
            absent_ids = {image.get("id") for image in content["images"]
                          if isinstance(image, dict) and str(image.get("file_name", "")) in absent}
            present = {
                **content,
                "images": [i for i in content["images"] if not (isinstance(i, dict) and i.get("id") in absent_ids)],
                "annotations": [a for a in content["annotations"]
                                if not (isinstance(a, dict) and a.get("image_id") in absent_ids)],
            }
            labels_path = Path(temporary) / json_path.name
            labels_path.write_text(json.dumps(present))
        try:
            imported = fo.Dataset.from_dir(
                dataset_type=fo.types.COCODetectionDataset,
                data_path=str(images_dir),
                labels_path=str(labels_path),
                label_types="detections",
                label_field=GROUND_TRUTH,
                progress=False,
            )
        except Exception as error:  # FiftyOne's importer raises KeyError/ValueError... for malformed entries
            raise CvtriageError(f"{json_path}: cannot read this COCO file ({type(error).__name__}: {error})") from None
    samples = []
    try:
        for sample in imported.iter_samples():
            image_path = Path(sample.filepath)
            if not image_path.is_file() or not _decodes(image_path):
                problems.append(DataProblem(image_path, UNDECODABLE_IMAGE if image_path.is_file() else "image not found"))
                continue
            ground_truth = sample[GROUND_TRUTH] or fo.Detections()
            detections = [
                fo.Detection(label=d.label, bounding_box=list(d.bounding_box), label_index=index)
                for index, d in enumerate(ground_truth.detections)
            ]
            samples.append(fo.Sample(filepath=sample.filepath, **{GROUND_TRUTH: fo.Detections(detections=detections)}))
    finally:
        imported.delete()
    return samples, classes, {"coco_json": str(json_path.resolve())}, problems


def print_problems(console, problems: list[DataProblem], title: str, root: Path | None = None) -> None:
    """A short table of problems, naming each file (relative to the dataset root), capped with a count."""
    from rich.table import Table

    table = Table(title=f"{title} ({len(problems)})", title_justify="left")
    table.add_column("file")
    table.add_column("line", justify="right")
    table.add_column("problem")
    for problem in problems[:PROBLEMS_SHOWN]:
        path = problem.path.relative_to(root) if root and problem.path.is_relative_to(root) else problem.path
        table.add_row(str(path), str(problem.line or ""), problem.message)
    if len(problems) > PROBLEMS_SHOWN:
        table.caption = f"... and {len(problems) - PROBLEMS_SHOWN} more"
    console.print(table)

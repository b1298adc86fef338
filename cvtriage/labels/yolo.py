"""YOLO-format datasets on disk: reading and checking data.yaml and the label files, and writing them.

Shared by `train`, `audit-labels`, `inject-errors`, `harvest` and `synth`, so each reports the
same problems the same way: fatal ones (missing keys or paths) raise a CvtriageError naming the
file; problems in single label files are collected, each naming the file and line, for the
caller to report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cvtriage.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from cvtriage.errors import CvtriageError
from cvtriage.image_files import IMAGE_SUFFIXES

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
        cx, cy, w, h = xyxy_to_cxcywh(box).tolist()
        return cls(class_id, cx, cy, w, h, line)

    def to_line(self) -> str:
        return f"{self.class_id} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return tuple(cxcywh_to_xyxy((self.cx, self.cy, self.w, self.h)).tolist())


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
            if check_images and not image_decodes(image_path):
                dataset.problems.append(DataProblem(image_path, UNDECODABLE_IMAGE))
                continue
            images.append(LabeledImage(image_path, label_path, split, boxes, label_path.is_file()))
        if not images:
            raise CvtriageError(f"{yaml_path}: '{split}' split has no images")
        dataset.splits[split] = images
    return dataset


def image_decodes(image_path: Path) -> bool:
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

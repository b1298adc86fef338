"""Label datasets in FiftyOne: a YOLO dataset, a COCO JSON or an existing FiftyOne dataset loaded
into a persistent FiftyOne dataset, the form `audit-labels` and the App work on.

Conventions shared with scan and review: persistent datasets, labels in `ground_truth`, splits
as sample tags, class order in `default_classes`, the source data.yaml in info["data_yaml"].
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cvtriage.boxes import cxcywh_to_xywh
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import (
    UNDECODABLE_IMAGE,
    DataProblem,
    find_data_yaml,
    image_decodes,
    read_yolo_dataset,
    require_readable_labels,
)

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
    # Persistent from the start: another process's exit deletes non-persistent datasets.
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
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
                bounding_box=cxcywh_to_xywh((box.cx, box.cy, box.w, box.h)).tolist(),
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
            if not image_path.is_file() or not image_decodes(image_path):
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

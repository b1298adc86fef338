"""Harvest: reviewers' decisions on scan events become a YOLO dataset.

- confirmed: the track's boxes with the event's class; class:<name>: the same boxes as <name>;
- not-object: no box, so the frame teaches the model that this is background (a hard negative).
Which frames each decision labels, what is painted over in them and which split they go to:
cvtriage.review.harvest_frames. Their images are decoded again from the source video, which must
be the very file scanned. `merge` copies an existing YOLO dataset first and adds the harvest to
it: its class list and label files are kept as they are, new classes are appended, and frames it
already holds are not added twice.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from cvtriage import __version__
from cvtriage.boxes import Box
from cvtriage.config import HarvestConfig
from cvtriage.decision_tags import CONFIRMED, NOT_OBJECT, PROPOSAL_CLASS, WRONG_CLASS
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import (
    LabelBox,
    YoloDataset,
    read_yolo_dataset,
    require_readable_labels,
    write_data_yaml,
)
from cvtriage.review.decisions import Decision, read_decisions
from cvtriage.review.harvest_frames import (
    HarvestedFrame,
    assign_splits,
    frames_of,
    not_in_target,
)
from cvtriage.scan.frames import FrameSource, probe_source, source_identity
from cvtriage.scan.results import ScanRun, read_scan_run
from cvtriage.types import VideoInfo

MANIFEST = "manifest.json"


@dataclass
class HarvestResult:
    out: Path
    data_yaml: Path
    names: list[str]
    decisions: Counter  # verdict -> events
    frames: list[HarvestedFrame]
    left_out: Counter  # reason -> frames
    new_classes: list[str]
    merged_from: Path | None = None
    merged_images: Counter = field(default_factory=Counter)  # split -> images copied from the merge target

    def images(self, split: str) -> int:
        return sum(frame.split == split for frame in self.frames)

    def boxes(self, split: str | None = None) -> Counter:
        return Counter(box[0] for frame in self.frames if split in (None, frame.split) for box in frame.boxes)

    def negatives(self, split: str) -> int:
        return sum(frame.split == split and not frame.boxes for frame in self.frames)


def harvest(
    dataset_name: str,
    out: Path,
    settings: HarvestConfig,
    decisions_csv: Path | None = None,
    merge: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> HarvestResult:
    """Write OUT, a YOLO dataset (data.yaml, images/, labels/, manifest.json), from the decided
    events of the scan dataset `dataset_name`. Nothing is written unless every check passes."""
    from cvtriage.review.app import load_review_dataset

    out = Path(out)
    if out.exists():
        raise CvtriageError(f"{out}: already exists; harvest writes a new dataset (choose another folder)")
    dataset = load_review_dataset(dataset_name)
    runs = scan_runs(dataset)
    target = _read_merge_target(merge) if merge is not None else None
    known = [*(target.names if target else []), *(name for run in runs.values() for name in run.classes)]
    decisions = read_decisions(
        dataset, decisions_csv, known, set(settings.new_classes), set(settings.ignore_tags)
    )
    if not decisions:
        raise CvtriageError(
            f"{dataset.name}: no event has a decision yet: tag events confirmed, not-object or class:<name> "
            "in the App (saved view review-queue), or pass --decisions FILE.csv"
        )
    by_video: dict[str, dict[int, Decision]] = {}
    for decision in decisions:
        by_video.setdefault(decision.video, {})[decision.event_id] = decision
    sources: dict[str, VideoInfo] = {}  # probed once: probing reads the whole container's index
    for video, decided in by_video.items():
        _check_run_matches(runs[video], decided, dataset)
        sources[video] = check_source_unchanged(runs[video])

    names, new_classes = _class_list(decisions, runs, target, settings)
    left_out: Counter = Counter()
    frames = [frame for video, decided in by_video.items() for frame in frames_of(runs[video], decided, settings, left_out)]
    if target is not None:
        frames = not_in_target(frames, target, left_out)
    frames = assign_splits(frames, runs, settings, left_out)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        merged = _copy_target(target, staging) if target is not None else Counter()
        written = _write_frames(staging, frames, sources, names, settings.jpeg_quality, left_out, on_progress)
        splits = {"train": "images/train", "val": "images/val"}
        if target is not None and "test" in target.splits:
            splits["test"] = "images/test"
        for split in splits:
            (staging / "labels" / split).mkdir(parents=True, exist_ok=True)
            (staging / "images" / split).mkdir(parents=True, exist_ok=True)
        write_data_yaml(staging, names, splits)
        result = HarvestResult(out, out / "data.yaml", names, Counter(d.verdict for d in decisions), written,
                               left_out, new_classes, Path(merge) if merge else None, merged)  # fmt: skip
        _write_manifest(staging / MANIFEST, result, decisions, dataset.name, decisions_csv)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


# --- reading and checking ---------------------------------------------------------------------


def scan_runs(dataset) -> dict[str, ScanRun]:
    """Each video's scan results folder, read back (video path -> run)."""
    schema = dataset.get_field_schema()
    if "source_video" not in schema or "event_id" not in schema:
        raise CvtriageError(f"{dataset.name}: not a scan dataset (no event samples); harvest reads `cvtriage scan` results")
    if "scan_results" not in schema:
        raise CvtriageError(f"{dataset.name}: scanned by an older cvtriage (no scan_results): run the scan again")
    runs = {}
    for video, folder in sorted(set(zip(*dataset.values(["source_video", "scan_results"])))):
        if folder is None:
            raise CvtriageError(f"{dataset.name}: events of {video} have no scan_results (scanned by an older cvtriage): scan it again")
        run = read_scan_run(Path(folder))
        if str(run.source) != video:
            raise CvtriageError(f"{folder}: holds a scan of {run.source}, not of {video}: scan {Path(video).name} again")
        runs[video] = run
    return runs


def _check_run_matches(run: ScanRun, decided: dict[int, Decision], dataset) -> None:
    """The results folder must still be the scan whose events were reviewed."""
    classes = dict(zip(*dataset.match({"source_video": str(run.source)}).values(["event_id", "class_name"])))
    for event_id in decided:
        event = run.events.get(event_id)
        if event is None or event.class_name != classes.get(event_id):
            raise CvtriageError(
                f"{run.folder}: event {event_id} is not the one reviewed in {dataset.name} (the folder was scanned "
                "again since): scan into the dataset again and review there"
            )


def check_source_unchanged(run: ScanRun) -> VideoInfo:
    """Frames are decoded again: from the very file that was scanned, or not at all. Returns it, probed."""
    source, recorded = run.source, run.video.get("identity")
    if recorded is None:
        raise CvtriageError(f"{run.folder / 'events.json'}: records no identity of its video: run the scan again")
    if not source.exists():
        raise CvtriageError(f"{source}: the scanned video is gone (moved or deleted); put it back or scan it where it is now")
    info = probe_source(source)
    if source_identity(info) != recorded or (info.width, info.height) != (run.video["width"], run.video["height"]):
        raise CvtriageError(f"{source}: changed since it was scanned (size or content differ): scan it again before harvesting")
    return info


def _read_merge_target(merge: Path) -> YoloDataset:
    target = read_yolo_dataset(Path(merge))
    require_readable_labels(target)
    return target


def _class_list(
    decisions: list[Decision], runs: dict[str, ScanRun], target: YoloDataset | None, settings: HarvestConfig
) -> tuple[list[str], list[str]]:
    """The dataset's classes: the merge target's (or the scan model's) in their order, then new ones.

    With `classes: decided` and no merge target, only the classes that got boxes. A merge target
    gains a class only when a reviewer named it (class:<name>) or --new-class did: a confirmed
    model class the target lacks means it has another class list (probably the wrong target).
    """
    labelled = [d.class_name for d in decisions if d.verdict != NOT_OBJECT]
    named = {d.class_name for d in decisions if d.verdict == WRONG_CLASS} | set(settings.new_classes)
    # A proposal scan's `object` is no class: it is what a reviewer names (cvtriage.scan.proposals).
    model = [name for name in dict.fromkeys(name for run in runs.values() for name in run.classes) if name != PROPOSAL_CLASS]
    if target is not None:
        base = list(target.names)
        foreign = sorted({name for name in labelled if name not in base and name not in named})
        if foreign:
            count = sum(d.class_name in foreign for d in decisions if d.verdict == CONFIRMED)
            raise CvtriageError(
                f"{target.yaml_path}: its classes ({', '.join(base)}) have no {', '.join(repr(n) for n in foreign)}, "
                f"which {count} confirmed event(s) would add: relabel them class:<name>, or pass --new-class to append"
            )
    elif settings.classes == "decided":
        base = [name for name in model if name in labelled]
    else:
        base = model
    # New classes the scan model knows go in its order (so its class ids line up where they can),
    # then classes no model knows, in the order reviewers first named them.
    new = [name for name in model if name in labelled and name not in base]
    new += [name for name in dict.fromkeys(labelled) if name not in base and name not in new]
    return base + new, new


# --- writing ------------------------------------------------------------------------------------


def mask_regions(image: np.ndarray, boxes: list[Box], visible: list[Box] | None = None) -> np.ndarray:
    """The image with each box, and with `visible` everything outside those windows, painted in
    the frame's median colour: neither object nor background."""
    if not boxes and visible is None:
        return image
    colour = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
    height, width = image.shape[:2]

    def pixels(box: Box) -> tuple[slice, slice]:
        x1, y1, x2, y2 = box
        return slice(max(0, int(y1)), min(height, int(np.ceil(y2)))), slice(max(0, int(x1)), min(width, int(np.ceil(x2))))

    if visible is None:
        painted = image.copy()
    else:
        painted = np.empty_like(image)
        painted[:] = colour
        for window in visible:
            painted[pixels(window)] = image[pixels(window)]
    for box in boxes:
        painted[pixels(box)] = colour
    return painted


def _write_frames(
    folder: Path,
    frames: list[HarvestedFrame],
    sources: dict[str, VideoInfo],
    names: list[str],
    jpeg_quality: int,
    left_out: Counter,
    on_progress: Callable[[int, int], None] | None,
) -> list[HarvestedFrame]:
    """Decode each video once, in frame order, and write each harvested frame's image and labels."""
    written: list[HarvestedFrame] = []
    done = 0
    for video, info in sources.items():
        todo = {frame.frame: frame for frame in frames if frame.video == video}
        if not todo:
            continue
        source = FrameSource(info)
        for index, image in source.frames(lambda i: i in todo):
            frame = todo.pop(index)
            done += 1
            if on_progress is not None:
                on_progress(done, len(frames))
            if image is None:
                left_out["frame could not be decoded"] += 1
                continue
            height, width = image.shape[:2]
            for kind in ("images", "labels"):
                (folder / kind / frame.split).mkdir(parents=True, exist_ok=True)
            ok, encoded = cv2.imencode(".jpg", mask_regions(image, frame.masked, frame.visible), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise CvtriageError(f"{info.path}: frame {index} could not be encoded as JPEG")
            (folder / "images" / frame.split / frame.image_name).write_bytes(encoded.tobytes())
            lines = [_label_line(names.index(name), box, width, height) for name, box, _, _ in frame.boxes]
            label = (folder / "labels" / frame.split / frame.image_name).with_suffix(".txt")
            label.write_text("".join(f"{line}\n" for line in lines))
            written.append(frame)
        left_out["frame could not be decoded"] += len(todo)  # past the end the video now decodes to
    if not written:
        raise CvtriageError("no frame could be harvested: " + _describe_left_out(left_out))
    return written


def _label_line(class_id: int, box: Box, width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    x1, x2 = max(0.0, x1) / width, min(float(width), x2) / width
    y1, y2 = max(0.0, y1) / height, min(float(height), y2) / height
    return LabelBox.from_xyxy(class_id, (x1, y1, x2, y2)).to_line()


def _describe_left_out(left_out: Counter) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in left_out.items() if count) or "nothing to harvest"


def _copy_target(target: YoloDataset, folder: Path) -> Counter:
    """The merge target's images (hard-linked where possible) and label files, split by split."""
    copied: Counter = Counter()
    for split, images in target.splits.items():
        common = Path(os.path.commonpath([image.image_path.parent for image in images]))
        for image in images:
            relative = image.image_path.relative_to(common)
            destination = folder / "images" / split / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(image.image_path, destination)
            except OSError:
                shutil.copy2(image.image_path, destination)
            label = (folder / "labels" / split / relative).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(f"{box.to_line()}\n" for box in image.boxes))
            copied[split] += 1
    return copied


def _write_manifest(path: Path, result: HarvestResult, decisions: list[Decision], dataset: str, csv_path: Path | None) -> None:
    document = {
        "cvtriage_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scan_dataset": dataset,
        "decisions_csv": str(Path(csv_path).resolve()) if csv_path else None,
        "merged_from": str(result.merged_from.resolve()) if result.merged_from else None,
        "names": result.names,
        "new_classes": result.new_classes,
        "decisions": [
            {"video": d.video, "event_id": d.event_id, "decision": d.verdict, "class": d.class_name, "from": d.where}
            for d in decisions
        ],
        "images": [
            {
                "image": f"images/{frame.split}/{frame.image_name}",
                "split": frame.split,
                "video": frame.video,
                "frame": frame.frame,
                "labels": [
                    {"class": name, "box_xyxy": [round(v, 1) for v in box], "event_id": event_id, "decision": verdict}
                    for name, box, event_id, verdict in frame.boxes
                ],
                "negatives": [{"event_id": event_id, "decision": NOT_OBJECT} for event_id in frame.negatives],
                "masked_xyxy": [[round(v, 1) for v in box] for box in frame.masked],
                "visible_xyxy": None if frame.visible is None else [[round(v, 1) for v in box] for box in frame.visible],
            }
            for frame in result.frames
        ],
        "left_out": dict(result.left_out),
        "merged_images": dict(result.merged_images),
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")

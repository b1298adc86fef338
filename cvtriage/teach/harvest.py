"""Harvest: reviewers' decisions on scan events become a YOLO dataset.

One decision labels every distinct view of its event: the frames the scan inferred while the
tracker followed the object (events.json's `track`), thinned so that near-identical views are
not repeated, decoded again from the source video, which must be the very file scanned.
- confirmed: the track's boxes with the event's class; class:<name>: the same boxes as <name>;
- not-object: no box, so the frame teaches the model that this is background (a hard negative).
A frame is labelled with every decided event seen in it. An object the scan saw there that nobody
decided on (a detection overlapping no decided event's box) must not become background: with
`undecided: mask` (the default) its box is painted over in the frame's median colour, so the model
sees neither object nor background there (the frame is left out when such a box touches a
decided one); with `undecided: skip` the whole frame is left out. Objects the scan never proposed
are in no detection list, so with `context` (the default) only a window around each decided object
is kept and the rest of the frame painted over too; and a view showing only a sliver of a decided
object at the frame's edge (`partial_view_area`) is painted over rather than labelled.

Splits keep events whole: the decided events of each `split_seconds` stretch of video go to train or
val together (by a hash of the video and the stretch, so a re-harvest puts them where they were),
and a frame showing events of both sides is left out; with --split-by video (the default from
MIN_VIDEOS_TO_SPLIT_BY_VIDEO videos on) whole videos do. `merge` copies an existing YOLO dataset first and adds the harvest to it:
its class list and label files are kept as they are, new classes are appended, and frames it
already holds are not added twice.
"""

from __future__ import annotations

import hashlib
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
from cvtriage.config import HarvestConfig
from cvtriage.dataset import LabelBox, YoloDataset, read_yolo_dataset, require_readable_labels, write_data_yaml
from cvtriage.errors import CvtriageError
from cvtriage.frames import FrameSource, VideoInfo, probe_source, source_identity
from cvtriage.teach.decisions import CONFIRMED, NOT_OBJECT, WRONG_CLASS, Decision, read_decisions
from cvtriage.teach.tracks import Box, ScanRun, boxes_by_frame, boxes_overlap, partial_views, read_scan_run, thin_track

MANIFEST = "manifest.json"
# Undecided detections are painted over with this much of their size around them (a detector's
# box can be a little tight).
MASK_MARGIN = 0.1
# From this many videos on, `split_by: auto` keeps whole videos on one side.
MIN_VIDEOS_TO_SPLIT_BY_VIDEO = 5


@dataclass
class HarvestedFrame:
    video: str
    frame: int
    image_name: str
    boxes: list[tuple[str, Box, int, str]] = field(default_factory=list)  # class, box (px), event id, verdict
    negatives: list[int] = field(default_factory=list)  # not-object events in view
    masked: list[Box] = field(default_factory=list)  # undecided detections and slivers, painted over (px)
    visible: list[Box] | None = None  # windows around decided objects; the rest is painted over (None: whole frame)
    events: set[int] = field(default_factory=set)  # the decided events this frame was harvested for
    split: str = "train"


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
    from cvtriage.review import load_review_dataset

    out = Path(out)
    if out.exists():
        raise CvtriageError(f"{out}: already exists; harvest writes a new dataset (choose another folder)")
    dataset = load_review_dataset(dataset_name)
    runs = _scan_runs(dataset)
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
        sources[video] = _check_source_unchanged(runs[video])

    names, new_classes = _class_list(decisions, runs, target, settings)
    left_out: Counter = Counter()
    frames = [frame for video, decided in by_video.items() for frame in _frames_of(runs[video], decided, settings, left_out)]
    if target is not None:
        frames = _not_in_target(frames, target, left_out)
    frames = _assign_splits(frames, runs, settings, left_out)

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


def _scan_runs(dataset) -> dict[str, ScanRun]:
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


def _check_source_unchanged(run: ScanRun) -> VideoInfo:
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
    model = list(dict.fromkeys(name for run in runs.values() for name in run.classes))
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


# --- frames ------------------------------------------------------------------------------------


def _frames_of(run: ScanRun, decided: dict[int, Decision], settings: HarvestConfig, left_out: Counter) -> list[HarvestedFrame]:
    """The frames one video's decisions label, each with every decided event seen in it."""
    video = str(run.source)
    short_hash = run.video["identity"]["sha256"][:8]
    frame_size = (run.video["width"], run.video["height"])
    wanted: dict[int, set[int]] = {}
    partial: dict[int, set[int]] = {}  # event -> frames where only a sliver of it is in the picture
    for event_id in decided:
        event = run.events[event_id]
        partial[event_id] = partial_views(event, settings, frame_size)
        views = thin_track(event, settings, frame_size, partial[event_id])
        left_out["near-identical view"] += len(event.track) - len(views) - len(partial[event_id])
        left_out["object only partly in the picture"] += len(partial[event_id])
        for frame in views:
            wanted.setdefault(frame, set()).add(event_id)
    tracks = {event_id: boxes_by_frame(run.events[event_id]) for event_id in decided}
    frames = []
    for index, for_events in sorted(wanted.items()):
        frame = HarvestedFrame(video, index, f"{run.source.stem}-{short_hash}-f{index:06d}.jpg", events=for_events)
        in_view = {event_id: track[index] for event_id, track in tracks.items() if index in track}
        undecided = [
            box for _, box, _ in run.detections.get(index, [])
            if not any(boxes_overlap(box, decided_box, settings.decided_iou) for decided_box in in_view.values())
        ]  # fmt: skip
        touching = any(boxes_overlap(box, decided_box, 1e-6) for box in undecided for decided_box in in_view.values())
        if undecided and (settings.undecided == "skip" or touching):
            left_out["undecided object in view"] += 1
            continue
        frame.masked = [_grown(box, MASK_MARGIN) for box in undecided]
        for event_id, box in sorted(in_view.items()):
            decision = decided[event_id]
            if index in partial[event_id]:
                frame.masked.append(_grown(box, MASK_MARGIN))
            elif decision.verdict == NOT_OBJECT:
                frame.negatives.append(event_id)
            else:
                frame.boxes.append((decision.class_name, box, event_id, decision.verdict))
        if settings.context:
            frame.visible = [
                _grown(box, settings.context, square=True) for event_id, box in in_view.items() if index not in partial[event_id]
            ]  # fmt: skip
        frames.append(frame)
    return frames


def _grown(box: Box, margin: float, square: bool = False) -> Box:
    """The box grown by `margin` times its size on every side (`square`: times its longer side)."""
    x1, y1, x2, y2 = box
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    if square:
        dx = dy = max(dx, dy)
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) / 2
        x1, y1, x2, y2 = cx - half, cy - half, cx + half, cy + half
    return x1 - dx, y1 - dy, x2 + dx, y2 + dy


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


def _not_in_target(frames: list[HarvestedFrame], target: YoloDataset, left_out: Counter) -> list[HarvestedFrame]:
    present = {image.image_path.name for image in target.images()}
    kept = [frame for frame in frames if frame.image_name not in present]
    left_out["already in the merge target"] += len(frames) - len(kept)
    return kept


def _assign_splits(
    frames: list[HarvestedFrame], runs: dict[str, ScanRun], settings: HarvestConfig, left_out: Counter
) -> list[HarvestedFrame]:
    """Train or val by whole decided events (or whole videos), never by frame.

    Events go in blocks of `split_seconds` of video time (by their middle frame): objects of a
    flyover overlap in time, so a block keeps neighbours together and only frames near a block's
    edge show events of both sides. Each block (video) goes to val with probability
    `val_fraction`, by a hash of its video's identity and its number, so a re-harvest or a later
    merge puts it where it was. A frame showing events of both sides is left out: its pixels
    would teach train what val tests.
    """
    by_video = settings.split_by == "video" or (
        settings.split_by == "auto" and len({frame.video for frame in frames}) >= MIN_VIDEOS_TO_SPLIT_BY_VIDEO
    )

    def unit(video: str, event_id: int) -> tuple[str, int]:
        if by_video:
            return video, 0
        event, fps = runs[video].events[event_id], runs[video].video["fps"] or 1.0
        return video, int((event.first_frame + event.last_frame) / 2 // (settings.split_seconds * fps))

    def units_of(frame: HarvestedFrame) -> set[tuple[str, int]]:
        in_view = {event_id for _, _, event_id, _ in frame.boxes} | set(frame.negatives) | frame.events
        return {unit(frame.video, event_id) for event_id in in_view}

    def draw(block: tuple[str, int]) -> float:
        sha = runs[block[0]].video["identity"]["sha256"]
        return int(hashlib.sha256(f"{sha}:{block[1]}".encode()).hexdigest()[:12], 16) / 16**12

    units = sorted(set().union(*(units_of(frame) for frame in frames)))
    val = {block for block in units if draw(block) < settings.val_fraction}
    if settings.val_fraction > 0 and len(units) > 1 and not val:
        val = {min(units, key=draw)}  # a short harvest: still one block on the val side
    if val == set(units):
        val = set()  # train must not be empty
    kept = []
    for frame in frames:
        sides = {block in val for block in units_of(frame)}
        if len(sides) > 1:
            left_out["events of both splits in view"] += 1
            continue
        frame.split = "val" if sides.pop() else "train"
        kept.append(frame)
    return kept


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


def summary_table(result: HarvestResult):
    """Decisions in, labelled frames out (per split and class), and what was left out and why."""
    from rich.console import Group
    from rich.table import Table

    decided = sum(result.decisions.values())
    table = Table(title=f"Harvested {len(result.frames)} frames from {decided} decisions", title_justify="left")
    splits = ["train", "val"]
    table.add_column("")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_row("frames", *(str(result.images(split)) for split in splits))
    for name in result.names:
        counts = [result.boxes(split)[name] for split in splits]
        if any(counts):
            table.add_row(f"boxes: {name}" + (" (new)" if name in result.new_classes else ""), *map(str, counts))
    table.add_row("hard negatives (no box)", *(str(result.negatives(split)) for split in splits))
    if result.merged_from is not None:
        table.add_row(f"copied from {result.merged_from.name}", *(str(result.merged_images[split]) for split in splits))
    figures = Table.grid(padding=(0, 2))
    verdicts = ", ".join(f"{count} {verdict}" for verdict, count in sorted(result.decisions.items()))
    figures.add_row("decisions", verdicts)
    figures.add_row("boxes per decision", f"{sum(result.boxes().values()) / max(decided, 1):.1f}")
    for reason, count in sorted(result.left_out.items()):
        if count:
            figures.add_row("left out", f"{count} frames: {reason}")
    figures.add_row("classes", ", ".join(result.names))
    if not result.images("val"):
        figures.add_row("val", "no harvested frames (one stretch of video, see split_seconds): "
                        + ("the merge target's val remains" if result.merged_from else "train needs --merge or more footage"))
    return Group(table, figures)

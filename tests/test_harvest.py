"""The review loop on a scan whose right answer is known: decisions (App tags and CSV), the review
queue, and harvest (labels, hard negatives, undecided objects, splits, merge, bad input)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from square_video import Square, SquareDetector, write_square_video
from typer.testing import CliRunner
from yolo_factory import write_yolo_dataset

from cvtriage.cli import app
from cvtriage.config import HarvestConfig, load_scan_config
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import read_yolo_dataset
from cvtriage.review.decisions import DecisionProblems, read_decisions
from cvtriage.review.harvest import harvest
from cvtriage.scan.pipeline import run_scan
from cvtriage.scan.priority import REVIEW_QUEUE_VIEW
from cvtriage.scan.store import review_queue
from cvtriage.tracks import partial_views, thin_track
from cvtriage.types import Event, TrackPoint

# Still squares (one view each): an event's first frame is the one frame a decision labels.
RED_A = Square(0, 10, 70, 20, 40)  # confirmed; its view (frame 10) also shows C, undecided: masked
RED_C = Square(0, 0, 40, 120, 120)  # nobody decides on it
GREEN_B = Square(1, 50, 100, 200, 40)  # class:blue square (a new class); its view (frame 50) shows A too
GREEN_D = Square(1, 110, 140, 250, 130)  # not-object: a hard negative at frame 110
SQUARES = [RED_A, RED_C, GREEN_B, GREEN_D]
runner = CliRunner()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A scan of the squares into a FiftyOne dataset: (video, results folder, dataset name, events by square)."""
    import fiftyone as fo

    folder = tmp_path_factory.mktemp("harvest")
    video = write_square_video(folder / "squares.mp4", SQUARES, frames=150)
    name = f"test-harvest-{uuid.uuid4().hex[:8]}"
    settings = load_scan_config(out=str(folder / "runs"), device="cpu", dataset=name, fps=2.0, weights="squares.pt")
    result = run_scan(video, settings, model=SquareDetector())
    by_first_frame = {event.first_frame: event for event in result.events}
    events = {"A": by_first_frame[10], "C": by_first_frame[0], "B": by_first_frame[50], "D": by_first_frame[110]}
    yield video, result.out_dir, name, events
    fo.delete_dataset(name)


@pytest.fixture
def scan_dataset(scanned):
    """A fresh copy of the scan's dataset for one test (tags are per test)."""
    import fiftyone as fo

    copy = fo.load_dataset(scanned[2]).clone(f"{scanned[2]}-{uuid.uuid4().hex[:6]}", persistent=True)
    yield copy
    copy.delete()


def tag(dataset, event: Event, tag_name: str) -> None:
    dataset.match({"event_id": event.event_id}).tag_samples(tag_name)


def decide_all(dataset, events) -> None:
    tag(dataset, events["A"], "confirmed")
    tag(dataset, events["B"], "class:blue square")
    tag(dataset, events["D"], "not-object")


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("event_id,decision,class\n" + "".join(f"{row}\n" for row in rows))
    return path


def labels_of(out: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text().splitlines() for p in sorted(out.glob("labels/*/*.txt"))}


# --- decisions ------------------------------------------------------------------------------------


def test_decisions_from_app_tags_and_from_csv_agree(scanned, scan_dataset, tmp_path):
    events = scanned[3]
    decide_all(scan_dataset, events)
    from_tags = read_decisions(scan_dataset, known_classes=["red square", "green square"])
    scan_dataset.untag_samples(["confirmed", "class:blue square", "not-object"])
    csv = write_csv(tmp_path / "d.csv", [f"{events['A'].event_id},confirmed,", f"{events['B'].event_id},wrong-class,blue square",
                                         f"{events['D'].event_id},not-object,"])  # fmt: skip
    from_csv = read_decisions(scan_dataset, csv, known_classes=["red square", "green square"])
    summary = lambda decisions: [(d.key, d.verdict, d.class_name) for d in decisions]  # noqa: E731
    assert summary(from_tags) == summary(from_csv)
    assert summary(from_tags) == [
        ((str(scanned[0].resolve()), events["A"].event_id), "confirmed", "red square"),
        ((str(scanned[0].resolve()), events["B"].event_id), "wrong-class", "blue square"),
        ((str(scanned[0].resolve()), events["D"].event_id), "not-object", None),
    ]


def test_a_tag_on_the_events_own_box_is_a_decision(scanned, scan_dataset):
    event = scanned[3]["A"]
    sample = scan_dataset.match({"event_id": event.event_id}).first()
    for label in sample.detections.detections:
        if "event" in label.tags:
            label.tags.append("not-object")
    sample.save()
    [decision] = read_decisions(scan_dataset)
    assert (decision.event_id, decision.verdict) == (event.event_id, "not-object")


def test_conflicting_unknown_and_misspelt_decisions_are_each_one_line(scanned, scan_dataset, tmp_path):
    events = scanned[3]
    tag(scan_dataset, events["A"], "confirmed")
    tag(scan_dataset, events["B"], "confirm")  # not the vocabulary
    tag(scan_dataset, events["D"], "class:red sqaure")  # a typo of a known class
    csv = write_csv(tmp_path / "d.csv", [f"{events['A'].event_id},not-object,", "999,confirmed,"])
    with pytest.raises(DecisionProblems) as raised:
        read_decisions(scan_dataset, csv, known_classes=["red square", "green square"])
    problems = raised.value.problems
    assert len(problems) == 4, problems
    assert any("unknown tag 'confirm'" in p and "did you mean 'confirmed'" in p for p in problems)
    assert any("'red sqaure' looks like a typo of 'red square'" in p for p in problems)
    assert any("no event 999" in p and "d.csv:3" in p for p in problems)
    assert any(f"event {events['A'].event_id} of squares.mp4 is decided two ways" in p and "d.csv:2" in p for p in problems)
    assert "4 problems in the review decisions, nothing harvested:\n  " in str(raised.value)
    # One problem is one line.
    one = write_csv(tmp_path / "one.csv", ["999,confirmed,"])
    with pytest.raises(DecisionProblems) as raised:
        read_decisions(scan_dataset, one, known_classes=["red square"], new_classes={"red sqaure"}, ignore_tags={"confirm"})
    assert len(str(raised.value).splitlines()) == 1 and str(raised.value).endswith("(nothing harvested)"), str(raised.value)
    # Its own class misspelt on a confirmation: said so, not sent to wrong-class (where the same
    # name is a typo too).
    misspelt = events["A"].class_name[:-1]
    own = write_csv(tmp_path / "own.csv", [f"{events['A'].event_id},confirmed,{misspelt}"])
    with pytest.raises(DecisionProblems, match=f"'{misspelt}', a typo of the event's own '{events['A'].class_name}'"):
        read_decisions(scan_dataset, own, known_classes=["red square"], new_classes={"red sqaure"}, ignore_tags={"confirm"})
    # Said to be new, the near-miss is a class of its own.
    scan_dataset.untag_samples(["confirm"])
    decisions = read_decisions(scan_dataset, known_classes=["red square"], new_classes={"red sqaure"})
    assert {d.class_name for d in decisions} == {"red square", "red sqaure"}


# --- the review queue -----------------------------------------------------------------------------


def test_review_queue_holds_undecided_events_by_teaching_value(scanned, scan_dataset):
    queue = scan_dataset.load_saved_view(REVIEW_QUEUE_VIEW)
    priorities = queue.values("review_priority")
    assert len(queue) == 4 and priorities == sorted(priorities, reverse=True)
    tag(scan_dataset, scanned[3]["A"], "confirmed")
    assert scanned[3]["A"].event_id not in review_queue(scan_dataset).values("event_id")
    events_json = json.loads((scanned[1] / "events.json").read_text())
    assert all(0 <= record["review_priority"] <= 1 and record["track"] for record in events_json["events"])


def test_thinning_keeps_one_view_per_distinct_position():
    track = [TrackPoint(frame, (10.0 + 4 * frame, 10.0, 30.0 + 4 * frame, 30.0), 0.9) for frame in range(20)]  # 4 px a frame
    event = Event(1, 1, 0, "red square", 0, 19, 0, 1, 0.9, 0, track[0].box, 20, track)
    settings = HarvestConfig(view_shift=0.05)  # of a 400x300 frame's diagonal: 25 px
    assert thin_track(event, settings, (400, 300)) == [0, 7, 14]
    assert thin_track(event, HarvestConfig(view_shift=0), (400, 300)) == list(range(20))


def test_a_sliver_of_an_object_at_the_frame_edge_is_not_a_view():
    # A 20-px square leaving a 400x300 frame on the right, 5 px a frame: whole up to frame 16, then
    # 15, 10 and 5 px of it in the picture (the detector's box is clipped to the frame).
    track = [TrackPoint(f, (300.0 + 5 * f, 100.0, min(400.0, 320.0 + 5 * f), 120.0), 0.9) for f in range(20)]
    event = Event(1, 1, 0, "red square", 0, 19, 0, 1, 0.9, 0, track[0].box, 20, track)
    settings = HarvestConfig(view_shift=0)  # partial_view_area 0.5: under half the usual 20x20
    assert partial_views(event, settings, (400, 300)) == {19}
    assert thin_track(event, settings, (400, 300)) == list(range(19))
    assert partial_views(event, HarvestConfig(partial_view_area=0), (400, 300)) == set()
    # In the middle of the frame a small box is the object seen smaller, not a sliver.
    assert partial_views(event, settings, (800, 300)) == set()


def test_context_keeps_windows_around_decided_objects_and_paints_the_rest():
    from cvtriage.review.harvest import mask_regions

    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 0] = np.arange(200, dtype=np.uint8)[None, :]  # a gradient: every column differs
    painted = mask_regions(image, [(20, 20, 30, 30)], visible=[(10, 10, 60, 60)])
    median = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
    assert (painted[10:60, 30:60] == image[10:60, 30:60]).all()  # the window, outside the masked box
    assert (painted[20:30, 20:30] == median).all()  # a masked box inside the window
    assert (painted[:, 60:] == median).all() and (painted[:10] == median).all()  # outside every window
    assert (mask_regions(image, []) == image).all()


# --- harvest --------------------------------------------------------------------------------------


def test_harvest_writes_exactly_the_decided_labels_and_negatives(scanned, scan_dataset, tmp_path):
    import cv2

    events = scanned[3]
    decide_all(scan_dataset, events)
    out = tmp_path / "harvested"
    result = harvest(scan_dataset.name, out, HarvestConfig(val_fraction=0))  # all in train: exact files

    assert result.names == ["red square", "green square", "blue square"] and result.new_classes == ["blue square"]
    assert sorted(frame.frame for frame in result.frames) == [10, 50, 110]
    labels = labels_of(out)
    stem = f"squares-{json.loads((scanned[1] / 'events.json').read_text())['video']['identity']['sha256'][:8]}"
    assert set(labels) == {f"{stem}-f000010.txt", f"{stem}-f000050.txt", f"{stem}-f000110.txt"}
    assert labels[f"{stem}-f000110.txt"] == []  # the not-object frame: a hard negative
    width, height = 320, 192

    def expected(square: Square, frame: int) -> list[float]:
        x1, y1, x2, y2 = square.box_at(frame)
        return [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]

    [only_a] = [line.split() for line in labels[f"{stem}-f000010.txt"]]
    assert int(only_a[0]) == 0 and [float(v) for v in only_a[1:]] == pytest.approx(expected(RED_A, 10), abs=2 / width)
    boxes = sorted(line.split() for line in labels[f"{stem}-f000050.txt"])
    assert [int(b[0]) for b in boxes] == [0, 2]  # A as red square, B as the new class
    for box, square in zip(boxes, [RED_A, GREEN_B]):
        assert [float(v) for v in box[1:]] == pytest.approx(expected(square, 50), abs=2 / width)

    # C, in view at frame 10 and undecided, is painted over: neither a red square nor background.
    [image_10] = out.glob(f"images/*/{stem}-f000010.jpg")
    pixels = cv2.imread(str(image_10))
    x1, y1, x2, y2 = RED_C.box_at(10)
    assert np.abs(pixels[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].astype(int) - 110).max() < 12  # the grey field
    x1, y1, x2, y2 = RED_A.box_at(10)
    assert pixels[y1 + 4, x1 + 4, 2] > 180  # A is still red

    manifest = json.loads((out / "manifest.json").read_text())
    by_frame = {image["frame"]: image for image in manifest["images"]}
    assert {(label["event_id"], label["decision"], label["class"]) for label in by_frame[50]["labels"]} == {
        (events["A"].event_id, "confirmed", "red square"), (events["B"].event_id, "wrong-class", "blue square"),
    }  # fmt: skip
    assert by_frame[110]["negatives"] == [{"event_id": events["D"].event_id, "decision": "not-object"}]
    assert len(by_frame[10]["masked_xyxy"]) == 1
    # Only a window three times A's size around A is kept at frame 10 (context 1.0): objects the
    # scan never proposed elsewhere in the frame cannot become background.
    ax1, ay1, ax2, ay2 = RED_A.box_at(10)
    side = max(ax2 - ax1, ay2 - ay1)
    assert by_frame[10]["visible_xyxy"] == [pytest.approx([ax1 - side, ay1 - side, ax2 + side, ay2 + side], abs=1.5)]
    # Split by event, never by frame: every event's frames on one side (A is in frames 10 and 50),
    # and a frame showing events of both sides is left out.
    split = harvest(scan_dataset.name, tmp_path / "split", HarvestConfig(val_fraction=0.5, split_seconds=1.0))
    assert_events_whole(split.frames)
    assert len(split.frames) + split.left_out["events of both splits in view"] == 3
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "red square", 1: "green square", 2: "blue square"} and "path" not in data

    whole = harvest(scan_dataset.name, tmp_path / "whole", HarvestConfig(context=0, val_fraction=0))
    assert all(image["visible_xyxy"] is None for image in json.loads((whole.out / "manifest.json").read_text())["images"])
    skipping = harvest(scan_dataset.name, tmp_path / "skipping", HarvestConfig(undecided="skip", val_fraction=0))
    assert sorted(frame.frame for frame in skipping.frames) == [50, 110]
    assert skipping.left_out["undecided object in view"] == 1


def assert_events_whole(frames) -> None:
    sides: dict[int, set[str]] = {}
    for frame in frames:
        for event_id in [box[2] for box in frame.boxes] + frame.negatives:
            sides.setdefault(event_id, set()).add(frame.split)
    assert all(len(side) == 1 for side in sides.values()), sides


def test_splits_keep_events_and_stretches_whole_whatever_the_draw():
    from collections import Counter

    from cvtriage.review.harvest_frames import HarvestedFrame, assign_splits
    from cvtriage.scan.results import ScanRun

    # Events 1-6, each 10 s long, starting every 8 s: neighbours share frames (30 fps).
    events = {n: Event(n, n, 0, "red square", 240 * n, 240 * n + 300, 8.0 * n, 8.0 * n + 10, 0.9, 240 * n,
                       (0.0, 0.0, 1.0, 1.0), 2) for n in range(1, 7)}  # fmt: skip
    seen_both = 0
    for draw in range(20):  # another video identity: another draw of the sides
        video = {"identity": {"sha256": f"{draw:064x}"}, "fps": 30.0}
        runs = {"v.mp4": ScanRun(Path("."), video, {}, ["red square"], events, {})}
        frames = [HarvestedFrame("v.mp4", frame, f"f{frame}.jpg", boxes=[("red square", (0, 0, 1, 1), n, "confirmed")
                                 for n, e in events.items() if e.first_frame <= frame <= e.last_frame], events=set())
                  for frame in range(240, 1741, 30)]  # fmt: skip
        for frame in frames:
            frame.events = {box[2] for box in frame.boxes}
        left_out = Counter()
        kept = assign_splits(frames, runs, HarvestConfig(val_fraction=0.3, split_seconds=20), left_out)
        assert_events_whole(kept)
        assert len(kept) + left_out["events of both splits in view"] == len(frames)
        assert any(frame.split == "train" for frame in kept)
        seen_both += any(frame.split == "val" for frame in kept)
    assert seen_both >= 5  # val is drawn, not never


def test_merge_keeps_the_targets_classes_and_images_and_adds_no_duplicates(scanned, scan_dataset, tmp_path):
    decide_all(scan_dataset, scanned[3])
    target = tmp_path / "target"
    write_yolo_dataset(target, {"train": 3, "val": 1})
    (target / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val",
                                                      "names": {0: "green square", 1: "red square"}}))  # fmt: skip
    # The fixture's labels use ids 0..2: keep only ids the two-class list has.
    for path in target.glob("labels/*/*.txt"):
        path.write_text("".join(f"{line}\n" for line in path.read_text().splitlines() if line.split()[0] in "01"))
    target_labels = {p.name: p.read_text().splitlines() for p in target.glob("labels/*/*.txt")}

    merged = tmp_path / "merged"
    harvest(scan_dataset.name, merged, HarvestConfig(val_fraction=0), merge=target)
    names = read_yolo_dataset(merged).names
    assert names == ["green square", "red square", "blue square"]  # the target's order, the new class appended
    labels = labels_of(merged)
    for name, lines in target_labels.items():
        assert labels[name] == lines
    harvested = [lines for name, lines in labels.items() if name.endswith("f000050.txt")][0]
    assert sorted(int(line.split()[0]) for line in harvested) == [1, 2]  # red square is id 1 in the target
    assert len(list(merged.glob("images/*/*"))) == 4 + 3

    # Merging the same decisions again adds nothing: every frame is already there.
    with pytest.raises(CvtriageError, match="no frame could be harvested: .*3 already in the merge target"):
        harvest(scan_dataset.name, tmp_path / "again", HarvestConfig(val_fraction=0), merge=merged)
    assert not (tmp_path / "again").exists()


def test_a_merge_target_with_another_class_list_is_refused(scanned, scan_dataset, tmp_path):
    decide_all(scan_dataset, scanned[3])
    target = tmp_path / "cars"
    write_yolo_dataset(target, {"train": 2, "val": 1})  # car, person, boat
    with pytest.raises(CvtriageError, match=r"have no 'red square'.*relabel them class:<name>, or pass --new-class"):
        harvest(scan_dataset.name, tmp_path / "out", HarvestConfig(), merge=target)
    assert not (tmp_path / "out").exists()


def test_harvest_bad_input_is_one_line_and_writes_nothing(scanned, scan_dataset, tmp_path):
    video = scanned[0]
    out = tmp_path / "out"

    def fails(*extra) -> str:
        result = runner.invoke(app, ["harvest", scan_dataset.name, str(out), *extra])
        assert result.exit_code != 0 and "Traceback" not in result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output
        assert not out.exists()
        return lines[0]

    assert "no event has a decision yet" in fails()
    decide_all(scan_dataset, scanned[3])
    out.mkdir()
    assert "already exists" in runner.invoke(app, ["harvest", scan_dataset.name, str(out)]).output
    out.rmdir()
    assert "no FiftyOne dataset named 'nope'" in runner.invoke(app, ["harvest", "nope", str(out)]).output

    moved = video.with_name("moved.mp4")
    shutil.move(video, moved)
    try:
        assert "the scanned video is gone" in fails()
        write_square_video(video, SQUARES[:2], frames=150)  # another video where the scanned one was
        assert "changed since it was scanned" in fails()
    finally:
        shutil.move(moved, video)


def test_a_new_scan_does_not_silently_replace_decided_events(scanned, scan_dataset, tmp_path):
    video = scanned[0]
    settings = load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset=scan_dataset.name, fps=2.0, weights="squares.pt")
    run_scan(video, settings, model=SquareDetector())  # nothing decided yet: replaced
    tag(scan_dataset, scanned[3]["A"], "confirmed")
    with pytest.raises(CvtriageError, match="1 events of squares.mp4 carry review decisions .* --replace-decisions"):
        run_scan(video, settings, model=SquareDetector())
    assert "confirmed" in scan_dataset.distinct("tags")
    settings.replace_decisions = True
    run_scan(video, settings, model=SquareDetector())
    assert "confirmed" not in scan_dataset.distinct("tags")

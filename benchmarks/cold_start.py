"""Cold start: proposals without the class (`cvtriage scan --propose`), measured against the truth.

- Synthetic flyovers, with a model that knows none of their four classes (the COCO model,
  ../shared/data/weights/yolov8n-coco.pt, or --weights): the review loop's review flyovers scanned
  with --propose. A truth object is *found* when an event's track follows it (median IoU >= 0.5
  over the frames both exist: the simulated reviewer's test, what a decision needs to label it),
  and, as the scan's yardstick counts, when an event's keyframe box is on it (IoU >= 0.3, any
  class, one event per object). *Junk*: the events that follow no truth object (a reviewer's
  not-object). Targets: >= 80% found, <= 5 junk events per object found.
- One turn: the simulated reviewer decides the first --decisions events of the review queue
  (class:<truth class> on an object, not-object elsewhere; a proposal is never `confirmed`),
  `cvtriage teach`'s function runs the turn (harvest, training the COCO model for --epochs,
  rescan of the review flyovers, compare), and the new model scans the loop's test flyovers at
  the scan's default conf and at --low-conf: recall of the four classes against the truth, by
  class. Target: > 0 (fine-tuned on 50 decisions of the review loop's own kind, a class it had
  never seen stayed at antenna AP50 0.000).
- The real football clip (players 10-20 px, marked with coloured squares by its publisher, moving):
  scanned with --propose. In three frames the players were counted by hand (PLAYERS: each player's
  centre, read off the frame drawn with a 50 px grid and checked zoomed in; the referee, the
  assistant referee beyond the top line and the people beyond the bottom line are not players). A
  player is proposed when a proposal of that frame (detections.csv) covers its centre, within
  MARGIN px; and when an event's track does. Target: >= 80%. The frames are written with the
  proposals drawn (football/checked-<frame>.png) to check by eye.

    nice python benchmarks/cold_start.py [--shared-data DIR] [--weights W] [--decisions 50] [--epochs 15] [--skip-turn] [--skip-football] [--skip-synthetic]

Everything is written under runs/bench/cold-start (the flyovers are the review loop's, made once).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import time
from collections import Counter
from pathlib import Path

from review_loop import decide, flyovers, percent, queue_order, truth_of, verdict_counts
from scoring import (
    REVIEWER_IOU,
    TRUTH_MIN_IOU,
    EventSpan,
    best_followed,
    match_spans,
    reviewer_tag,
    track_ious,
)

from cvtriage.config import load_harvest_config, load_scan_config, load_train_config
from cvtriage.database import connect_database
from cvtriage.decision_tags import CLASS_PREFIX, NOT_OBJECT
from cvtriage.review.teach import TurnSettings, teach
from cvtriage.scan.looks import LOOK_FIELD
from cvtriage.scan.pipeline import run_scan
from cvtriage.scan.results import read_scan_run

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared" / "data"  # the real material beside the project (--shared-data)
BENCH_DIR = PROJECT_ROOT / "runs" / "bench" / "cold-start"
DATASET = "cvtriage-bench-cold-start"
FOOTBALL = "video/drone_soccer_field.mp4"
# Players counted by hand (see the docstring), by frame: (x, y) of each player's centre, pixels.
# 24 in each frame; the referee (unmarked, not counted) was at (565, 279), (541, 384), (580, 346).
PLAYERS = {
    120: [(511, 60), (549, 94), (580, 92), (500, 131), (489, 145), (314, 151), (302, 167), (281, 185), (450, 192),
          (587, 181), (570, 212), (436, 296), (580, 304), (416, 334), (252, 351), (504, 389), (420, 472), (599, 481),
          (664, 155), (684, 170), (665, 301), (680, 320), (886, 294), (660, 451)],
    600: [(624, 64), (480, 85), (645, 155), (364, 194), (514, 199), (555, 272), (580, 283), (431, 294), (303, 333),
          (454, 330), (253, 351), (415, 380), (343, 388), (336, 395), (575, 391), (595, 451), (512, 479), (417, 566),
          (641, 610), (668, 290), (658, 305), (869, 325), (666, 395), (656, 483)],
    1080: [(541, 80), (376, 174), (554, 214), (571, 252), (569, 309), (430, 329), (283, 336), (254, 352), (460, 369),
           (381, 429), (342, 445), (345, 456), (562, 438), (507, 464), (520, 534), (525, 561), (554, 644), (656, 108),
           (674, 190), (675, 319), (670, 369), (855, 374), (681, 423), (660, 535)],
}  # fmt: skip
MARGIN = 4  # px: a hand-read centre is good to a few pixels
# Why a truth object was missed (score_proposals).
MISSED_BECAUSE = ("track went on to another object", "boxes off it", "not proposed")


def propose(video: Path, weights: Path, out: Path, dataset: str | None) -> Path:
    settings = load_scan_config(weights=str(weights), propose=True, out=str(out))
    settings.dataset = dataset
    started = time.monotonic()
    result = run_scan(video, settings)
    print(f"  {video.name}: {len(result.events)} proposal events in {time.monotonic() - started:.0f} s "
          f"({result.stats['frames_inferred']} frames)", flush=True)  # fmt: skip
    return result.out_dir


def score_proposals(folder: Path, truth: dict) -> dict[str, int]:
    """Truth objects found (by track, by keyframe), events, junk events, and objects found by each cue."""
    events = list(read_scan_run(folder).events.values())
    medians = [track_ious(event, truth) for event in events]
    followed = [best_followed(ious, truth) for ious in medians]
    found = {record["id"] for iou, record in followed if iou >= REVIEWER_IOU}
    spans = [dataclasses.replace(EventSpan.of_event(event), class_name="object") for event in events]
    truths = [dataclasses.replace(EventSpan.of_truth(record), class_name="object") for record in truth["objects"]]
    counts = Counter(objects=len(truth["objects"]), found=len(found), events=len(events),
                     junk=sum(iou < REVIEWER_IOU for iou, _ in followed),
                     keyframe_found=sum(m is not None for m in match_spans(truths, spans, TRUTH_MIN_IOU)))  # fmt: skip
    for cue in ("detector", "motion", "contrast"):
        counts[f"found by {cue}"] = len({record["id"] for (iou, record), event in zip(followed, events)
                                         if iou >= REVIEWER_IOU and cue in event.cues})  # fmt: skip
    # Why an object was missed: a track followed it but followed another object better (the
    # tracker went on from one to the other), a track's boxes were off it, or nothing followed it.
    closest: Counter = Counter()
    for ious in medians:
        for object_id, iou in ious.items():
            closest[object_id] = max(closest[object_id], iou)
    for record in truth["objects"]:
        if record["id"] not in found:
            iou = closest[record["id"]]
            counts[MISSED_BECAUSE[0 if iou >= REVIEWER_IOU else 1 if iou >= TRUTH_MIN_IOU else 2]] += 1
    return counts


def recall_by_class(folder: Path, truth: dict) -> Counter:
    """Truth objects per class, and those an event of their class found (the scan's yardstick)."""
    found = [EventSpan.of_record(record) for record in json.loads((folder / "events.json").read_text())["events"]]
    reference = [EventSpan.of_truth(record) for record in truth["objects"]]
    counts: Counter = Counter()
    for ref, match in zip(reference, match_spans(reference, found, TRUTH_MIN_IOU)):
        counts[ref.class_name, "objects"] += 1
        counts[ref.class_name, "found"] += match is not None
    return counts


def synthetic(args, weights: Path) -> None:
    import fiftyone as fo

    review = flyovers([int(seed) for seed in args.review_seeds.split(",")], 60.0)
    if fo.dataset_exists(DATASET):
        fo.delete_dataset(DATASET)
    print(f"proposals on the review flyovers {args.review_seeds} by {weights.name} (knows none of their classes):")
    totals: Counter = Counter()
    for video in review:
        totals += score_proposals(propose(video, weights, BENCH_DIR / "review", DATASET), truth_of(video))
    found, objects = totals["found"], totals["objects"]
    print(f"found {found} of {objects} objects ({percent(found / objects)}; target >= 80%) with {totals['junk']} junk "
          f"events of {totals['events']} ({totals['junk'] / max(found, 1):.2f} per object found; target <= 5); "
          f"by keyframe: {totals['keyframe_found']} found; by cue: "
          + ", ".join(f"{cue} {totals[f'found by {cue}']}" for cue in ("detector", "motion", "contrast"))
          + "; missed: " + ", ".join(f"{kind} {totals[kind]}" for kind in MISSED_BECAUSE), flush=True)  # fmt: skip

    dataset = fo.load_dataset(DATASET)
    runs = {str(video.resolve()): read_scan_run(BENCH_DIR / "review" / video.stem) for video in review}
    truths = {str(video.resolve()): truth_of(video) for video in review}
    ids, videos, event_ids, looks = dataset.values(["id", "source_video", "event_id", LOOK_FIELD])
    tags = {sid: reviewer_tag(runs[v].events[e], truths[v]) for sid, v, e in zip(ids, videos, event_ids)}
    # "All like this" on a look mostly of junk, as not-object, would also dispose of its objects.
    by_look: dict = {}
    for sid, look in zip(ids, looks):
        by_look.setdefault(look, []).append(tags[sid] != NOT_OBJECT)
    in_junk_looks = sum(sum(group) for group in by_look.values() if sum(group) < len(group) / 2)
    print(f"looks: {len(by_look)} for {len(ids)} events, {sum(len(g) == 1 for g in by_look.values())} of one event; "
          f"{in_junk_looks} of {sum(map(sum, by_look.values()))} events on an object are in a look mostly of junk", flush=True)  # fmt: skip
    if args.skip_turn:
        return
    order = queue_order(dataset)
    decide(dataset, order, args.decisions, tags)
    taken = verdict_counts(tags[sid] for sid in order[: args.decisions])
    named = Counter(tags[sid].removeprefix(CLASS_PREFIX) for sid in order[: args.decisions] if tags[sid] != NOT_OBJECT)
    print(f"{args.decisions} decisions in review-queue order: {taken[CLASS_PREFIX]} named ({dict(named)}), "
          f"{taken[NOT_OBJECT]} not an object", flush=True)  # fmt: skip
    turns = BENCH_DIR / "turns"
    shutil.rmtree(turns, ignore_errors=True)
    started = time.monotonic()
    training = load_train_config(epochs=args.epochs, imgsz=640, device=args.device)
    turn = teach(DATASET, TurnSettings(load_harvest_config(), training, out=turns, next_dataset=f"{DATASET}-turn2"))
    classes = turn.metrics["classes"]
    print(f"one turn in {time.monotonic() - started:.0f} s: val AP50 "
          + ", ".join(f"{name} {values['map50'] if values['map50'] is not None else float('nan'):.3f}" for name, values in classes.items())
          + f"; the next queue holds {turn.queue} events", flush=True)  # fmt: skip
    for conf in (load_scan_config().conf, args.low_conf):
        counts: Counter = Counter()
        for video in flyovers([int(seed) for seed in args.test_seeds.split(",")], 60.0):
            settings = load_scan_config(weights=str(turn.best_weights), conf=conf, out=str(BENCH_DIR / "test" / f"conf-{conf:g}"))
            settings.dataset = None
            counts += recall_by_class(run_scan(video, settings).out_dir, truth_of(video))
        names = sorted({name for name, _ in counts})
        found, objects = sum(counts[n, "found"] for n in names), sum(counts[n, "objects"] for n in names)
        print(f"test flyovers {args.test_seeds} at conf {conf:g}: recall {percent(found / max(objects, 1))} ({found}/{objects}; "
              "target > 0): " + ", ".join(f"{n} {counts[n, 'found']}/{counts[n, 'objects']}" for n in names), flush=True)  # fmt: skip


def football(clip: Path, weights: Path) -> None:
    import cv2

    if not clip.is_file():
        print(f"{clip}: absent, football skipped")
        return
    print(f"proposals on the real football clip by {weights.name}:")
    folder = propose(clip, weights, BENCH_DIR / "football", None)
    proposals: dict[int, list[list[float]]] = {}
    with (folder / "detections.csv").open() as handle:
        for row in csv.DictReader(handle):
            proposals.setdefault(int(row["frame"]), []).append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
    tracked: dict[int, list[list[float]]] = {}
    for event in read_scan_run(folder).events.values():
        for point in event.track:
            tracked.setdefault(point.frame, []).append(list(point.box))

    def covered(point: tuple[int, int], boxes: list[list[float]]) -> bool:
        x, y = point
        return any(x1 - MARGIN <= x <= x2 + MARGIN and y1 - MARGIN <= y <= y2 + MARGIN for x1, y1, x2, y2 in boxes)

    totals = Counter()
    reader = cv2.VideoCapture(str(clip))
    for index in range(max(PLAYERS) + 1):
        ok, image = reader.read()
        if not ok or index not in PLAYERS:
            continue
        players = PLAYERS[index]
        by_proposal = [covered(p, proposals.get(index, [])) for p in players]
        by_event = [covered(p, tracked.get(index, [])) for p in players]
        totals.update(players=len(players), proposed=sum(by_proposal), tracked=sum(by_event))
        for x1, y1, x2, y2 in proposals.get(index, []):
            cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), (0, 0, 255), 1)
        for (x, y), hit in zip(players, by_proposal):
            cv2.circle(image, (x, y), 3, (0, 255, 0) if hit else (255, 0, 255), -1)
        cv2.imwrite(str(BENCH_DIR / "football" / f"checked-{index}.png"), image)
        print(f"  frame {index}: {sum(by_proposal)} of {len(players)} players proposed, {sum(by_event)} in an event's track, "
              f"{len(proposals.get(index, []))} proposals in the frame", flush=True)  # fmt: skip
    reader.release()
    print(f"football: {totals['proposed']} of {totals['players']} players proposed ({percent(totals['proposed'] / totals['players'])}; "
          f"target >= 80%), {totals['tracked']} in events' tracks ({percent(totals['tracked'] / totals['players'])})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-data", type=Path, default=SHARED, help="the real material (COCO weights, football clip)")
    parser.add_argument("--weights", type=Path, help="a model that knows none of the four classes (default: the shared COCO model)")
    parser.add_argument("--review-seeds", default="101,102,103")
    parser.add_argument("--test-seeds", default="201,202")
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--low-conf", type=float, default=0.1, help="the test scans' second confidence")
    parser.add_argument("--skip-turn", action="store_true", help="measure the proposals only")
    parser.add_argument("--skip-football", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true", help="the football clip only")
    args = parser.parse_args()
    args.weights = args.weights or args.shared_data / "weights" / "yolov8n-coco.pt"
    if not args.weights.is_file():
        raise SystemExit(f"{args.weights}: not found (pass --weights: a COCO model, or any that knows none of the four classes)")
    started = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    # A copy beside the benchmark's outputs: the scan caches its export beside the weights, and the
    # real material is read-only.
    copy = BENCH_DIR / "weights" / args.weights.name
    if not copy.is_file() or copy.stat().st_size != args.weights.stat().st_size:
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(args.weights, copy)
    args.weights = copy
    connect_database()  # started or joined safely beside other commands, as review_loop.py does
    if not args.skip_football:
        football(args.shared_data / FOOTBALL, args.weights)
    if not args.skip_synthetic:
        synthetic(args, args.weights)
    print(f"whole run {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()

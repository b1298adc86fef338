"""Find more like this, measured against the truth: does confirming one event rank the other events
of its true class first?

Three synthetic flyovers (the review loop's review flyovers, seeds 101-103, made once) scanned
with the demo model (PyTorch, not its export: the export has no feature maps) into one dataset.
Each event's true class: the truth object its track follows (median IoU >= 0.5, the simulated
reviewer's test); an event that follows none is junk. A *query* is every event a reviewer would
confirm (on an object of its own class). For a query of class c with n other events of class c
(all videos, the query left out), two figures, each 1.0 at best whatever n (with n > k no ranking
holds more than k of them in its top k), per class the mean over its queries, overall over all:
- *in the top k*, the issue's measure: the share of those n events that the top k holds (of at
  most k). Target: >= 80% at k = 20. A random ranking scores k / (events - 1) on average (n <= k);
- *the top min(k, n)*, stricter: the share of the top min(k, n) slots that is of class c (n = 6
  other antennas need the top 6 to be antennas, not merely the top 20 to hold them).

The headline ranking is the shipped one: `more_like_this` on the stored index (brain key
`features`). The variants (the same scans, the same queries, cosine rankings in numpy) show what
each step adds; the colour look (cvtriage.scan.looks) is the comparison. Then the cost of the
feature step: the same sampled frames through the detector with and without its hooks.

    nice python benchmarks/more_like_this.py [--seeds 101,102,103] [--seconds 60] [--k 20] [--export]

`--export` scans through the model's OpenVINO export, the CPU's default: its events' features are
taken at each keyframe box from the PyTorch weights after the scan (cvtriage.scan.features
keyframe_features); only the colour look and the shipped ranking are printed then (the variants
need the features of every logged frame, which an export scan has none of).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from review_loop import PROJECT_ROOT, flyovers, percent, truth_of
from scoring import REVIEWER_IOU, followed_object, reviewer_tag

from cvtriage.config import load_scan_config
from cvtriage.database import connect_database
from cvtriage.decision_tags import CONFIRMED
from cvtriage.scan.features import event_features
from cvtriage.scan.log import log_path, logged_frames
from cvtriage.scan.pipeline import run_scan
from cvtriage.scan.results import read_scan_run
from cvtriage.scan.similar import FEATURES_BRAIN_KEY, more_like_this, within_track_whitening

OUT = PROJECT_ROOT / "runs" / "bench" / "more-like-this"
DATASET = "cvtriage-bench-more-like-this"
LEVEL_NAMES = ("P3 (stride 8)", "P4 (stride 16)", "P5 (stride 32)")  # the demo model's Detect head


def score(ranked: dict[int, list[int]], truth_class: list[str | None], queries: list[int], k: int, top_k: bool = False) -> dict[str, float]:
    """Per class and overall ("all"), the mean over the queries of each ranking (event numbers,
    the query left out) of the share of the top min(k, n) slots held by its class, or with
    `top_k` of the share of its class's n other events in the top k (see the module's docstring)."""
    per_class: dict[str, list[float]] = defaultdict(list)
    for query in queries:
        cls = truth_class[query]
        n = sum(1 for other, c in enumerate(truth_class) if c == cls and other != query)
        if n == 0:
            continue
        slots = min(k, n)
        top = ranked[query][: k if top_k else slots]
        per_class[cls].append(sum(truth_class[other] == cls for other in top) / slots)
    figures = {cls: float(np.mean(values)) for cls, values in sorted(per_class.items())}
    figures["all"] = float(np.mean([value for values in per_class.values() for value in values]))
    return figures


def cosine_ranking(vectors: np.ndarray, queries: list[int]) -> dict[int, list[int]]:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
    similarity = unit @ unit.T
    return {query: [int(j) for j in np.argsort(-similarity[query], kind="stable") if j != query] for query in queries}


def centred(vectors: np.ndarray) -> np.ndarray:
    return vectors - vectors.mean(axis=0)


def whitened(vectors: np.ndarray) -> np.ndarray:
    """PCA whitening over the dataset, its covariance shrunk by Ledoit-Wolf (no constant to tune)."""
    from sklearn.covariance import LedoitWolf

    shifted = vectors - vectors.mean(axis=0)
    values, basis = np.linalg.eigh(LedoitWolf().fit(shifted).covariance_)
    return shifted @ basis / np.sqrt(values)


def feature_cost(video: Path, settings, frames: int = 40, rounds: int = 4) -> tuple[float, float]:
    """Seconds per frame through the scan's detector, with the feature hooks and without (the same
    frames, one at a time as a CPU scan infers them; `rounds` alternating passes each, medians)."""
    from cvtriage.models import resolve_device
    from cvtriage.scan.detector import Detector
    from cvtriage.scan.export import model_to_run
    from cvtriage.scan.frames import FrameSource, probe_source

    info = probe_source(video)
    device = resolve_device(settings.device)
    model, _ = model_to_run(settings, device)
    detector = Detector.for_model(model, settings, None, device, info.width, info.height)
    reader = FrameSource(info).reader()
    images = [(index, info.time_of(index), reader.read(index)) for index in range(0, frames * 15, 15)]
    reader.close()
    tap = detector.backend.features
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for hooks in (True, False):
            detector.backend.features = tap if hooks else None
            started = time.perf_counter()
            for image in images:
                detector.detect([image])
            timings[hooks].append((time.perf_counter() - started) / len(images))
    return float(np.median(timings[True])), float(np.median(timings[False]))


def main() -> None:
    import fiftyone as fo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="101,102,103")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--export", action="store_true", help="scan through the OpenVINO export (the CPU's default)")
    args = parser.parse_args()
    connect_database()
    videos = flyovers([int(seed) for seed in args.seeds.split(",")], args.seconds)
    settings = load_scan_config(weights="demo", export="auto" if args.export else "off", out=str(OUT))
    settings.dataset = DATASET
    if fo.dataset_exists(DATASET):
        fo.delete_dataset(DATASET)
    events, truth_class, tags, frames_of = [], [], [], []
    scan_s = 0.0
    folders = []
    for video in videos:
        started = time.perf_counter()
        result = run_scan(video, settings)
        scan_s += time.perf_counter() - started
        truth = truth_of(video)
        frames = logged_frames(log_path(settings, video))
        folders.append(result.out_dir)
        for event in read_scan_run(result.out_dir).events.values():
            iou, record = followed_object(event, truth)
            events.append((str(Path(video).resolve()), event))
            truth_class.append(record["class_name"] if record is not None and iou >= REVIEWER_IOU else None)
            tags.append(reviewer_tag(event, truth))
            frames_of.append(frames)
    queries = [number for number, tag in enumerate(tags) if tag == CONFIRMED]
    dataset = fo.load_dataset(DATASET)
    number_of = {(video, event.event_id): number for number, (video, event) in enumerate(events)}
    sample_ids = dict(zip(zip(dataset.values("source_video"), dataset.values("event_id")), dataset.values("id")))
    shipped = {}
    for query in queries:
        video, event = events[query]
        view = more_like_this(dataset, sample_ids[(video, event.event_id)], k=len(events))
        shipped[query] = [number_of[key] for key in zip(view.values("source_video"), view.values("event_id"))]

    looks = dict(zip(dataset.values("id"), dataset.values("look_embedding")))
    look_vectors = np.array([looks[sample_ids[(video, event.event_id)]] for video, event in events])
    if args.export:
        variants = [("colour look (keyframe)", cosine_ranking(look_vectors, queries)),
                    (f"export scan: more_like_this (index '{FEATURES_BRAIN_KEY}')", shipped)]  # fmt: skip
        report(variants, videos, events, truth_class, queries, args.k, scan_s)
        return
    keyframe = _matrix([event_features(_at_keyframe(event), frames) for (_, event), frames in zip(events, frames_of)])
    track = _matrix([event_features(event, frames) for (_, event), frames in zip(events, frames_of)])
    levels = len(LEVEL_NAMES)
    variants = [
        ("colour look (keyframe)", cosine_ranking(look_vectors, queries)),
        ("features at the keyframe box, levels equal", cosine_ranking(keyframe, queries)),
        ("features over the track, levels equal", cosine_ranking(track, queries)),
        *[(f"features over the track, {name} only", cosine_ranking(_level(track, levels, n), queries))
          for n, name in enumerate(LEVEL_NAMES)],
        ("  + centred on the dataset's mean", cosine_ranking(centred(track), queries)),
        ("  + whitened over the dataset (Ledoit-Wolf) instead", cosine_ranking(whitened(track), queries)),
        ("  + whitened within tracks instead (shipped)", cosine_ranking(track @ within_track_whitening(folders), queries)),
        (f"shipped: more_like_this (index '{FEATURES_BRAIN_KEY}')", shipped),
    ]  # fmt: skip
    report(variants, videos, events, truth_class, queries, args.k, scan_s)
    with_hooks, without = feature_cost(videos[0], settings)
    print(f"feature step: {1000 * with_hooks:.1f} ms per sampled frame through the detector with it, "
          f"{1000 * without:.1f} without ({(with_hooks / without - 1):+.1%}; medians of 4 alternating passes over 40 "
          "frames, CPU, one frame a call, PyTorch)")  # fmt: skip


def report(variants, videos, events, truth_class, queries, k: int, scan_s: float) -> None:
    """The table: each ranking's share of the top min(k, n) on the query's class, per class and overall."""
    classes = sorted({c for c in truth_class if c is not None})
    print(f"{len(videos)} flyovers, {len(events)} events ({sum(c is None for c in truth_class)} junk), "
          f"{len(queries)} queries (events a reviewer confirms); scans {scan_s:.1f} s")  # fmt: skip
    counts = {cls: sum(c == cls for c in truth_class) for cls in classes}
    for top_k, title in ((True, f"of the class's other events, the share in the top {k} (the issue's measure; target >= 80%)"),
                         (False, f"of the top min({k}, n) slots, the share of the query's class (stricter)")):  # fmt: skip
        print(title)
        print(f"{'ranking':52s} " + " ".join(f"{cls[:12]:>12s}" for cls in classes) + f" {'overall':>8s}")
        print(f"{'(events of the class)':52s} " + " ".join(f"{counts[cls]:12d}" for cls in classes))
        for name, ranking in variants:
            figures = score(ranking, truth_class, queries, k, top_k)
            print(f"{name:52s} " + " ".join(f"{percent(figures.get(cls, float('nan'))):>12s}" for cls in classes)
                  + f" {percent(figures['all']):>8s}")  # fmt: skip
    print(f"a random ranking holds on average {percent(min(k, len(events) - 1) / (len(events) - 1)).strip()} of a class's other "
          f"events in its top {k} (a class of at most {k} others)")  # fmt: skip


def _level(vectors: np.ndarray, levels: int, number: int) -> np.ndarray:
    """Each vector's part of one level (the features are the levels' unit vectors end to end)."""
    width = vectors.shape[1] // levels
    return vectors[:, number * width : (number + 1) * width]


def _matrix(vectors: list) -> np.ndarray:
    """One row per event; zeros (ranked last) for one without features."""
    width = next(len(vector) for vector in vectors if vector is not None)
    return np.array([vector if vector is not None else np.zeros(width, np.float32) for vector in vectors])


def _at_keyframe(event):
    """The event with only its keyframe in its track (the one-frame variant)."""
    import dataclasses

    return dataclasses.replace(event, track=[point for point in event.track if point.frame == event.best_frame])


if __name__ == "__main__":
    main()

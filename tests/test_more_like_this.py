"""Find more like this: the detector's own features at each event's box, the same from both scan
strategies' backends, stored on the samples and ranked across videos by `more_like_this`."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import pytest

from cvtriage.config import load_scan_config
from cvtriage.errors import CvtriageError
from cvtriage.models import resolve_device
from cvtriage.paths import DEMO_WEIGHTS
from cvtriage.review.compare import compare_runs
from cvtriage.scan.detector import Detector
from cvtriage.scan.export import model_to_run
from cvtriage.scan.frames import FrameSource, probe_source
from cvtriage.scan.pipeline import run_scan
from cvtriage.scan.results import EVENT_FEATURES_NPY, TRACK_RESIDUALS_NPY, read_scan_run
from cvtriage.scan.similar import (
    FEATURES_FIELD,
    PATCHES_BRAIN_KEY,
    more_like_this,
    read_event_features,
    within_track_whitening,
)
from cvtriage.scan.store import review_queue
from cvtriage.synth.video import FlyoverSpec, generate_video


@pytest.fixture(scope="module")
def flyover(tmp_path_factory):
    video = tmp_path_factory.mktemp("alike") / "alike.mp4"
    generate_video(video, FlyoverSpec(seconds=8, width=640, height=360, seed=3))
    return video


@pytest.fixture(scope="module")
def twin_scans(flyover, tmp_path_factory):
    """The flyover and a copy of it under another name, scanned into one dataset: two videos
    whose events are the same objects."""
    import fiftyone as fo

    folder = tmp_path_factory.mktemp("twins")
    twin = shutil.copyfile(flyover, folder / "twin.mp4")
    settings = load_scan_config(out=str(folder / "runs"), device="cpu", weights=str(DEMO_WEIGHTS))
    settings.dataset = f"alike-{uuid.uuid4().hex[:8]}"
    for video in (flyover, twin):
        run_scan(video, settings)
    return fo.load_dataset(settings.dataset), folder / "runs"


def test_each_event_ranks_its_twin_in_the_other_video_first(twin_scans, flyover):
    dataset, _ = twin_scans
    source = str(flyover.resolve())
    originals = dataset.match({"source_video": source})
    assert len(originals) >= 3 and len(dataset) == 2 * len(originals)
    assert all(vector is not None for vector in dataset.values(FEATURES_FIELD))
    for sample in originals:
        ranked = more_like_this(dataset, sample, k=3)
        assert len(ranked) == 3 and sample.id not in ranked.values("id")
        best = ranked.first()
        assert (best.source_video, best.event_id) != (source, sample.event_id)
        assert best.event_id == sample.event_id  # the same object, in the other video
        cosine = float(np.dot(sample[FEATURES_FIELD], best[FEATURES_FIELD]))
        assert cosine > 0.9999  # the same frames give the same features


def test_in_the_review_queue_a_patch_sorts_its_twin_first(twin_scans):
    """The App's "sort by similarity" in the review queue (a patches view) needs an index of the
    patches: from each patch, the same object's patch in the other video comes first."""
    dataset, _ = twin_scans
    queue = review_queue(dataset)
    assert len(queue) == len(dataset)
    for patch in queue:
        ranked = queue.sort_by_similarity(patch.event_patch.id, k=2, brain_key=PATCHES_BRAIN_KEY)
        # Itself and its twin (the same frames, the same features: in either order).
        assert patch.event_patch.id in ranked.values("event_patch.id")
        assert ranked.values("event_id") == [patch.event_id] * 2 and len(set(ranked.values("source_video"))) == 2


def test_decided_events_leave_the_ranking(twin_scans):
    dataset, _ = twin_scans
    query, decided = dataset.take(2, seed=1)
    decided.tags.append("confirmed")
    decided.save()
    try:
        ranked = more_like_this(dataset, query.id, k=len(dataset))
        assert len(ranked) == len(dataset) - 2 and decided.id not in ranked.values("id")
    finally:
        decided.tags.remove("confirmed")
        decided.save()


def test_bad_input_is_one_line(twin_scans, tmp_path):
    dataset, runs = twin_scans
    for event in ("not-an-id", "0123456789abcdef01234567"):
        with pytest.raises(CvtriageError) as raised:
            more_like_this(dataset, event)
        assert "\n" not in str(raised.value) and event in str(raised.value)
    folder = shutil.copytree(runs / "twin", tmp_path / "twin")
    assert np.load(folder / TRACK_RESIDUALS_NPY).shape[1] == 240  # what the index is whitened by
    np.save(folder / EVENT_FEATURES_NPY, np.zeros((1, 3), np.float32))  # another scan's rows
    with pytest.raises(CvtriageError, match=f"^{folder / EVENT_FEATURES_NPY}: 1 rows for .* events") as raised:
        read_event_features(folder)
    assert "\n" not in str(raised.value)
    (folder / TRACK_RESIDUALS_NPY).write_bytes(b"not an array")
    with pytest.raises(CvtriageError, match=f"^{folder / TRACK_RESIDUALS_NPY}: cannot read it") as raised:
        within_track_whitening([folder])
    assert "\n" not in str(raised.value)


def test_both_strategies_backends_give_each_box_its_own_features(flyover):
    """The refine strategy's backend (Ultralytics' predict) and the dense one's (batches letterboxed
    on the device) hook the same head: the same boxes get the same features (to the grey level
    their letterboxes may differ by), and each box's are its own, not its neighbour's."""
    settings = load_scan_config(device="cpu", weights=str(DEMO_WEIGHTS), export="off")
    device = resolve_device("cpu")
    model, _ = model_to_run(settings, device)
    info = probe_source(flyover)
    reader = FrameSource(info).reader()
    frames = [(index, info.time_of(index), reader.read(index)) for index in (60, 61, 120, 121)]
    reader.close()
    found = {
        dense: Detector.for_model(model, settings, None, device, info.width, info.height, dense).detect(frames)
        for dense in (False, True)
    }
    boxes_seen = 0
    for refine, dense in zip(found[False], found[True]):
        assert refine.features is not None and dense.features is not None
        assert refine.features.shape == (len(refine), 240) and len(refine) == len(dense)
        np.testing.assert_allclose(refine.boxes_xyxy, dense.boxes_xyxy, atol=2.0)
        similarity = refine.features.astype(np.float32) @ dense.features.astype(np.float32).T
        assert (np.diag(similarity) > 0.99).all()
        # Its own box is the closest of the frame's, wherever there are several.
        assert (similarity.argmax(1) == np.arange(len(refine))).all()
        boxes_seen += len(refine)
    assert boxes_seen >= 4


def test_an_export_scan_gets_each_events_features_at_its_keyframe_from_the_pytorch_weights(
    twin_scans, flyover, tmp_path, monkeypatch
):
    """An OpenVINO export has no Detect head to hook: after the scan, the PyTorch weights it was
    made from give each event's features at its own box in its keyframe, close to those the
    PyTorch scan averaged along the track, and closest to the same event's. The two backends'
    scores differ slightly, so one may find an event the other misses and number the rest on
    from it: events are paired as `cvtriage compare` pairs two scans' events."""
    from cvtriage.scan import export

    monkeypatch.delenv(export.NO_EXPORT_ENV, raising=False)  # the suite turns exports off
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    settings = load_scan_config(out=str(tmp_path / "runs"), device="cpu", weights=str(DEMO_WEIGHTS), dataset=None)
    exported = run_scan(flyover, settings)
    assert exported.stats["export"] is not None
    by_export = read_event_features(exported.out_dir)
    _, runs = twin_scans
    by_pytorch = read_event_features(runs / flyover.stem)
    assert len(by_export) == len(exported.events) >= 3
    ids = sorted(by_pytorch)
    pytorch = np.stack([by_pytorch[event_id] for event_id in ids])
    pairs = {row["b_id"]: row["a_id"] for row in compare_runs(read_scan_run(runs / flyover.stem), read_scan_run(exported.out_dir)).rows
             if row["status"] == "matched"}  # fmt: skip
    assert len(pairs) >= 0.8 * len(exported.events)
    for export_id, pytorch_id in pairs.items():
        similarity = pytorch @ by_export[export_id]
        assert ids[int(similarity.argmax())] == pytorch_id and similarity.max() > 0.9

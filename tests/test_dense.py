"""The dense strategy (every frame in batches, for GPUs), run here on the CPU: its events against
Ultralytics' every-frame loop through the same tracker, its device letterbox against Ultralytics'
own preprocessing, resume, and the --strategy values."""

import json

import numpy as np
import pytest
from square_video import SquareDetector
from test_scan import (
    TRUTH,
    InterruptingDetector,
    one_error_line,
    outcome,
    scan_cli,
    settings_for,
)
from test_scan import video as video  # noqa: F401 (the module's fixture, used here too)

from cvtriage.config import load_scan_config
from cvtriage.errors import CvtriageError
from cvtriage.models import load_model
from cvtriage.paths import DEMO_WEIGHTS
from cvtriage.scan.backends import TorchBatchedBackend
from cvtriage.scan.backends.torch_batched import letterbox_geometry, letterbox_on_device
from cvtriage.scan.dense import DenseRates, scan_strategy
from cvtriage.scan.detector import WEAK_CONF_SHARE
from cvtriage.scan.engine import scan_source
from cvtriage.scan.frames import FrameSource, probe_source
from cvtriage.scan.log import log_path
from cvtriage.scan.tracking import EventTracker
from cvtriage.synth.video import FlyoverSpec, generate_video
from cvtriage.types import FrameDetections

# Two fire extinguishers (the demo model's surest class) crossing a small frame at 15 fps: 60
# frames, each through the model twice (the dense scan, the every-frame loop) in ~8 s on 2 cores.
FLYOVER = FlyoverSpec(seconds=4, fps=15, width=480, height=288, seed=2, objects=2, names=("fire extinguisher",))


@pytest.fixture(scope="module")
def flyover(tmp_path_factory):
    if not DEMO_WEIGHTS.is_file():
        pytest.skip(f"{DEMO_WEIGHTS} not present")
    video = tmp_path_factory.mktemp("dense") / "flyover.mp4"
    generate_video(video, FLYOVER)
    return video


def every_frame_events(video, settings, imgsz):
    """Ultralytics' own every-frame loop (`predict` on each frame at the scan's thresholds and
    input size), through cvtriage's tracker."""
    model = load_model(settings.weights)
    info = probe_source(video)
    tracker = EventTracker(info.fps, {int(k): v for k, v in model.names.items()}, settings)
    for index, image in FrameSource(info).frames(lambda index: True):
        [result] = model.predict(
            image, imgsz=imgsz, conf=settings.conf * WEAK_CONF_SHARE, iou=settings.iou,
            agnostic_nms=settings.agnostic_nms, device="cpu", verbose=False,
        )  # fmt: skip
        boxes = result.boxes.cpu().numpy()
        tracker.add(FrameDetections(index, info.time_of(index), boxes.xyxy, boxes.conf, boxes.cls.astype(np.int64)))
    return tracker.events()


def bounds(events):
    return [(e.class_id, e.first_frame, e.last_frame, e.best_frame) for e in events]


def test_dense_gives_the_events_of_every_frame_through_the_same_tracker(flyover, tmp_path, monkeypatch):
    calls = []
    predict = TorchBatchedBackend.predict
    monkeypatch.setattr(TorchBatchedBackend, "predict", lambda self, images, imgsz: calls.append(len(images)) or predict(self, images, imgsz))
    settings = settings_for(tmp_path, weights=str(DEMO_WEIGHTS), strategy="dense", dense_step=1, batch=4, imgsz=320)
    dense = scan_source(flyover, settings)
    assert calls == [4] * 15  # every frame, in batches, letterboxed on the device
    assert dense.stats["strategy"] == "dense" and dense.stats["frames_inferred"] == dense.stats["frames_total"] == 60
    reference = every_frame_events(flyover, settings, dense.stats["imgsz"])
    assert len(reference) >= 2
    assert bounds(dense.events) == bounds(reference)
    for ours, theirs in zip(dense.events, reference):
        # Scores move by a few thousandths (the device's resize rounds a pixel in ~8 one grey
        # level away from OpenCV's): a frame whose score sits at conf may count or not.
        assert abs(ours.frames_seen - theirs.frames_seen) <= 1
        assert ours.peak_confidence == pytest.approx(theirs.peak_confidence, abs=0.02)
        assert ours.best_box_xyxy == pytest.approx(theirs.best_box_xyxy, abs=1.5)


@pytest.mark.parametrize(
    "width, height, imgsz, rectangular, half",
    [(1280, 720, 864, True, False), (1920, 1080, 1280, True, False), (500, 300, 320, True, False),
     (200, 120, 320, True, False), (333, 517, 256, True, False), (1280, 720, 640, False, False),
     (640, 640, 416, False, False), (1920, 1080, 1280, True, True), (1280, 720, 640, False, True)],
)  # fmt: skip
def test_the_device_letterbox_is_ultralytics_preprocessing_within_a_grey_level(width, height, imgsz, rectangular, half):
    import cv2
    import torch
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(width)
    coarse = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)  # edges and smooth parts
    # Ultralytics' own: LetterBox (OpenCV), then its predictor's conversion (BGR to RGB, 0-1).
    letterboxed = LetterBox((imgsz, imgsz), auto=rectangular, stride=32)(image=image)
    theirs = torch.from_numpy(letterboxed[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    dtype = torch.float16 if half else torch.float32  # half: what CUDA gets
    geometry = letterbox_geometry(height, width, imgsz, 32, rectangular)
    ours = letterbox_on_device(torch.from_numpy(image)[None], geometry, dtype)
    assert ours.shape == theirs.shape and ours.dtype == dtype
    difference = (ours.float() - theirs).abs()
    # One grey level (half precision adds up to its step near 1, a quarter of a grey level).
    assert float(difference.max()) <= 1 / 255 + (2**-10 if half else 1e-6)
    assert float(difference.mean()) < 0.25 / 255  # most pixels equal


def test_the_device_letterbox_is_what_the_predictor_feeds_the_model(flyover):
    import torch

    model = load_model(DEMO_WEIGHTS)
    image = next(FrameSource(probe_source(flyover)).frames(lambda index: True))[1]
    model.predict(image, imgsz=416, device="cpu", verbose=False)
    theirs = model.predictor.preprocess([image])
    ours = letterbox_on_device(torch.from_numpy(image)[None], letterbox_geometry(*image.shape[:2], 416, 32), torch.float32)
    assert ours.shape == theirs.shape and float((ours - theirs).abs().max()) <= 1 / 255 + 1e-6


def test_dense_every_frame_finds_the_exact_bounds_without_refinement(video, tmp_path):  # noqa: F811
    result = scan_source(video, settings_for(tmp_path, strategy="dense", dense_step=1, batch=8), model=SquareDetector())
    assert sorted((e.class_id, e.first_frame, e.last_frame) for e in result.events) == TRUTH
    assert result.stats["frames_inferred"] == result.stats["frames_total"] == 150 and result.stats["frames_cropped"] == 0


def test_a_dense_scan_resumes_with_the_step_it_measured_to_the_same_result(video, tmp_path):  # noqa: F811
    settings = settings_for(tmp_path, strategy="dense", batch=4)
    # Calls: the predictor's set-up, the step's measurement (two batches), then two batches logged.
    with pytest.raises(CvtriageError, match="interrupted; run the same command again to resume"):
        scan_source(video, settings, model=InterruptingDetector(5))
    logged = [json.loads(line) for line in log_path(settings, video).read_text().splitlines()]
    [step] = [record["choice"]["dense_step"] for record in logged if "choice" in record]
    assert len([record for record in logged if "frame" in record]) == 8
    resumed = scan_source(video, settings, model=SquareDetector())
    assert resumed.stats["frames_resumed"] == 8 and resumed.stats["sample_step"] == step
    assert resumed.stats["dense_rates"] is None  # the log's step, not measured again
    reference = scan_source(video, settings_for(tmp_path / "reference", strategy="dense", batch=4, dense_step=step), model=SquareDetector())
    assert outcome(resumed) == outcome(reference)
    assert [d.frame_index for d in resumed.detections] == [d.frame_index for d in reference.detections]


def test_a_refine_scans_log_does_not_resume_as_a_dense_scan(video, tmp_path):  # noqa: F811
    scan_source(video, settings_for(tmp_path, strategy="refine"), model=SquareDetector())
    dense = scan_source(video, settings_for(tmp_path, strategy="dense", dense_step=1), model=SquareDetector())
    assert dense.stats["frames_resumed"] == 0


def test_the_dense_step_keeps_the_model_up_with_decoding():
    assert DenseRates(decode_fps=775, model_fps=2000).step == 1
    assert DenseRates(decode_fps=775, model_fps=775).step == 1
    assert DenseRates(decode_fps=775, model_fps=300).step == 3
    assert DenseRates(decode_fps=400, model_fps=20).step == 20


def test_strategy_auto_is_dense_on_cuda_and_refine_on_the_cpu():
    assert [scan_strategy("auto", device) for device in ("0", "0,1", "cpu", "mps")] == ["dense", "dense", "refine", "refine"]
    assert scan_strategy("refine", "0") == "refine" and scan_strategy("dense", "cpu") == "dense"
    assert load_scan_config().strategy == "auto" and load_scan_config(strategy="dense").strategy == "dense"


def test_cli_strategy_values_and_a_bad_one(video, tmp_path):  # noqa: F811
    for strategy in ("refine", "dense"):
        result = scan_cli(video, "--weights", "yolo11n.yaml", "--imgsz", "64", "--strategy", strategy, "--out", tmp_path / strategy)
        assert result.exit_code == 0, result.output
        stats = json.loads((tmp_path / strategy / "squares" / "events.json").read_text())["stats"]
        assert stats["strategy"] == strategy
    assert "dense, " in result.output  # the summary says which frames a dense scan inferred
    one_error_line(scan_cli(video, "--strategy", "fast"), "strategy", "'auto', 'dense' or 'refine'")

"""Proposals without the class (scan --propose): the motion and contrast cues on scenes whose
answer is known, their merge with the detector's boxes into `object` events with their cues,
and a reviewer naming a proposal (class:<name>) teaching that class."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from square_video import SquareDetector
from typer.testing import CliRunner

from cvtriage.boxes import iou_matrix
from cvtriage.cli import app
from cvtriage.config import ProposalsConfig, load_harvest_config, load_scan_config
from cvtriage.review.decisions import DecisionProblems, read_decisions
from cvtriage.review.harvest import harvest
from cvtriage.scan.cues import contrast_boxes, motion_boxes
from cvtriage.scan.pipeline import run_scan
from cvtriage.scan.proposals import CUES, cue_names, merge_cues

WIDTH, HEIGHT, FPS, FRAMES = 320, 192, 10.0, 40
PAN = 3  # px per frame the camera moves right
RED, GREEN = (40, 40, 230), (40, 220, 40)  # square_video.SquareDetector finds both
STILL = (150, 80, 14)  # world x, y, side of a square that stays put
MOVING = (60, 120, 14, 4)  # world x, y, side, px per frame it moves right (on top of the pan)
runner = CliRunner()


def ground(seed: int = 0) -> np.ndarray:
    """Grass-like texture: noise blurred to blotches a few px across, a few grey levels deep."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH + PAN * FRAMES + 40)).astype(np.float32), (0, 0), 2)
    noise = noise / noise.std() * 6
    return np.clip(np.stack([70 + noise, 110 + noise, 80 + noise], axis=2), 0, 255).astype(np.uint8)


def square_box(frame: int, moving: bool) -> tuple[int, int, int, int]:
    """The square's box in the frame (pixels)."""
    x, y, side = (MOVING[0] + MOVING[3] * frame, MOVING[1], MOVING[2]) if moving else STILL
    x -= PAN * frame
    return x, y, x + side, y + side


def render(world: np.ndarray, frame: int) -> np.ndarray:
    image = world[:, PAN * frame : PAN * frame + WIDTH].copy()
    for moving, colour in ((False, RED), (True, GREEN)):
        x1, y1, x2, y2 = square_box(frame, moving)
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
    return image


@pytest.fixture(scope="module")
def panning_video(tmp_path_factory) -> Path:
    """A camera panning over textured ground: a red square lies still, a green one drives along."""
    path = tmp_path_factory.mktemp("propose") / "panning.mp4"
    world = ground()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for frame in range(FRAMES):
        writer.write(render(world, frame))
    writer.release()
    return path


def best_iou(boxes: np.ndarray, box) -> float:
    return float(iou_matrix(boxes, [box]).max()) if len(boxes) else 0.0


def test_motion_finds_what_moves_once_the_camera_pan_is_taken_out():
    world, frame, cues = ground(), 20, ProposalsConfig()
    boxes, strengths = motion_boxes(render(world, frame), [render(world, frame - 2), render(world, frame + 2)], cues)
    assert best_iou(boxes, square_box(frame, moving=True)) > 0.5
    assert best_iou(boxes, square_box(frame, moving=False)) == 0  # still, however far the camera moved
    assert len(boxes) == 1 and 0 < strengths[0] < 1  # neither the texture nor where the square was


def test_without_compensation_the_pan_itself_would_be_motion():
    """The same frames, the camera's motion not taken out: the still square and its ghost differ too."""
    world, frame = ground(), 20
    here, before = render(world, frame), render(world, frame - 2)
    moved = np.abs(here.astype(int) - before.astype(int)).max(axis=2) > 60
    x1, y1, x2, y2 = square_box(frame, moving=False)
    assert moved[y1:y2, x1 - 2 * PAN : x2].any()


def test_contrast_finds_what_stands_out_from_the_ground_and_not_the_ground():
    boxes, strengths = contrast_boxes(render(ground(), 10), ProposalsConfig())
    assert len(boxes) == 2
    assert best_iou(boxes, square_box(10, moving=False)) > 0.6 and best_iou(boxes, square_box(10, moving=True)) > 0.6
    assert ((strengths > 0) & (strengths < 1)).all()
    # A painted line is not an object: longer than max_aspect times its width.
    image = render(ground(), 10)
    cv2.line(image, (10, 20), (130, 24), (250, 250, 250), 2)
    assert len(contrast_boxes(image, ProposalsConfig())[0]) == 2


def test_cues_on_one_object_merge_into_one_proposal_with_both_cues():
    detector = (np.array([[10, 10, 30, 30]], np.float32), np.array([0.2], np.float32))
    contrast = (np.array([[11, 9, 31, 29], [100, 100, 120, 120]], np.float32), np.array([0.6, 0.3], np.float32))
    boxes, strengths, masks = merge_cues({"detector": detector, "contrast": contrast})
    assert masks.tolist() == [CUES["detector"] | CUES["contrast"], CUES["contrast"]]
    assert boxes[0].tolist() == [10, 10, 30, 30]  # the detector's box: the tightest
    assert strengths.tolist() == pytest.approx([0.6, 0.3])  # the stronger cue's
    assert cue_names(masks[0]) == ("detector", "contrast")
    assert merge_cues({})[0].shape == (0, 4)


@pytest.fixture(scope="module")
def proposed(panning_video, tmp_path_factory):
    """The panning video scanned with --propose into a dataset (the stand-in detector finds the squares too)."""
    import fiftyone as fo

    name = f"test-propose-{uuid.uuid4().hex[:8]}"
    out = tmp_path_factory.mktemp("propose-runs")
    settings = load_scan_config(out=str(out), device="cpu", dataset=name, fps=5.0, weights="squares.pt", propose=True)
    result = run_scan(panning_video, settings, model=SquareDetector())
    yield result, name
    fo.delete_dataset(name)


def test_a_proposal_scan_makes_object_events_with_the_cues_that_proposed_them(proposed):
    import fiftyone as fo

    result, name = proposed
    by_cues = {event.cues: event for event in result.events}
    assert set(by_cues) == {("detector", "contrast"), ("detector", "contrast", "motion")}, [e.cues for e in result.events]
    assert {event.class_name for event in result.events} == {"object"}
    assert {event.class_id for event in result.events} == {0}
    moving = by_cues["detector", "contrast", "motion"]
    assert iou_matrix([moving.best_box_xyxy], [square_box(moving.best_frame, moving=True)])[0, 0] > 0.5
    document = json.loads((result.out_dir / "events.json").read_text())
    assert sorted(tuple(record["cues"]) for record in document["events"]) == sorted(by_cues)
    assert "detector+contrast+motion" in (result.out_dir / "events.csv").read_text()
    dataset = fo.load_dataset(name)
    assert sorted(tuple(cues) for cues in dataset.values("cues")) == sorted(by_cues)
    assert len(dataset.load_saved_view("review-queue")) == 2


@pytest.mark.parametrize(
    "flags, message",
    [(["--classes", "ladder"], "a proposal scan looks for objects of any class"),
     (["--strategy", "dense"], "a proposal scan samples frames")],
)  # fmt: skip
def test_proposal_settings_refuse_a_class_list_and_the_dense_strategy(flags, message):
    result = runner.invoke(app, ["scan", "nothing.mp4", "--propose", *flags])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.stderr


def test_a_proposal_named_by_a_reviewer_teaches_that_class(proposed, tmp_path):
    """class:ladder on an `object` event labels its boxes ladder; `confirmed` teaches nothing and is refused."""
    import fiftyone as fo

    result, name = proposed
    dataset = fo.load_dataset(name).clone(f"{name}-{uuid.uuid4().hex[:6]}", persistent=True)
    try:
        still, moving = sorted(result.events, key=lambda event: len(event.cues))
        dataset.match({"event_id": still.event_id}).tag_samples("confirmed")
        with pytest.raises(DecisionProblems, match="confirms a proposal"):
            read_decisions(dataset)
        dataset.untag_samples("confirmed")
        dataset.match({"event_id": still.event_id}).tag_samples("class:ladder")
        dataset.match({"event_id": moving.event_id}).tag_samples("not-object")
        out = tmp_path / "harvest"
        harvested = harvest(dataset.name, out, load_harvest_config())
        assert harvested.names == ["ladder"]  # `object` is no class
        assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "ladder"}
        lines = [line.split() for label in out.glob("labels/*/*.txt") for line in label.read_text().splitlines()]
        assert lines and {line[0] for line in lines} == {"0"}
        assert harvested.boxes() == {"ladder": len(lines)}
    finally:
        dataset.delete()

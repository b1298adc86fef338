"""Harvest of objects that move: two flights of one dataset, each with a square crossing the
picture, every labelled frame checked against where its square really is in that very frame
(test_harvest.py's squares stand still, so a box taken from another frame of the track would
pass there)."""

from __future__ import annotations

import json
import uuid

import cv2
import numpy as np
import pytest
from square_video import COLOURS, Square, SquareDetector, write_square_video

from cvtriage.config import HarvestConfig, load_scan_config
from cvtriage.review.harvest import harvest
from cvtriage.scan.pipeline import run_scan

WIDTH, HEIGHT = 320, 192
FLIGHTS = {
    "east": Square(0, 5, 84, 20, 60, vx=3.0, vy=0.5),  # red, left to right, 3 px a frame
    "west": Square(1, 0, 80, 280, 30, vx=-3.0, vy=1.2),  # green, right to left and down
}


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    """Both flights scanned into one FiftyOne dataset, every event confirmed: (dataset, folder)."""
    import fiftyone as fo

    folder = tmp_path_factory.mktemp("moving")
    name = f"test-harvest-moving-{uuid.uuid4().hex[:8]}"
    settings = load_scan_config(out=str(folder / "runs"), device="cpu", dataset=name, fps=2.0, weights="squares.pt")
    for flight, square in FLIGHTS.items():
        run_scan(write_square_video(folder / f"{flight}.mp4", [square], frames=90), settings, model=SquareDetector())
    dataset = fo.load_dataset(name)
    dataset.tag_samples("confirmed")
    yield dataset, folder
    dataset.delete()


def test_each_labelled_frame_holds_its_own_box_of_a_moving_object_from_every_video(flights, tmp_path):
    """Fails if a frame is labelled with the box of another frame of the track
    (cvtriage.review.harvest_frames, frames_of: `in_view = {event_id: track[index] ...` ->
    `in_view = {event_id: track[min(track)] ...`): the label then stays where the object was
    first seen while the object moves on."""
    dataset, _ = flights
    assert len(dataset) == 2  # one event a flight
    out = tmp_path / "harvested"
    result = harvest(dataset.name, out, HarvestConfig(val_fraction=0))
    manifest = json.loads((out / "manifest.json").read_text())
    by_video: dict[str, list[int]] = {}
    for image in manifest["images"]:
        by_video.setdefault(image["video"].rsplit("/", 1)[-1], []).append(image["frame"])
    # Several views of each object (it moves 45 px between sampled frames, beyond view_shift).
    assert set(by_video) == {"east.mp4", "west.mp4"} and all(len(frames) >= 4 for frames in by_video.values())
    assert result.names == ["red square", "green square"]

    for image in manifest["images"]:
        flight = image["video"].rsplit("/", 1)[-1].removesuffix(".mp4")
        square = FLIGHTS[flight]
        x1, y1, x2, y2 = square.box_at(image["frame"])
        label = (out / image["image"].replace("images/", "labels/", 1)).with_suffix(".txt")
        [line] = label.read_text().splitlines()
        class_id, *cxcywh = line.split()
        assert int(class_id) == square.class_id, image["image"]
        cx, cy, w, h = (float(v) for v in cxcywh)
        labelled = [(cx - w / 2) * WIDTH, (cy - h / 2) * HEIGHT, (cx + w / 2) * WIDTH, (cy + h / 2) * HEIGHT]
        assert labelled == pytest.approx([x1, y1, x2, y2], abs=1.5), (image["image"], line)  # codec fringes: 1 px

        # The image is that frame: the square where the label says, and the field where the
        # square was 3 frames (9 px) before.
        pixels = cv2.imread(str(out / image["image"])).astype(int)
        assert np.abs(pixels[(y1 + y2) // 2, (x1 + x2) // 2] - COLOURS[square.class_id]).max() < 40
        earlier = square.box_at(image["frame"] - 3)
        trailing_x = earlier[0] + 2 if square.vx > 0 else earlier[2] - 3
        assert np.abs(pixels[(earlier[1] + earlier[3]) // 2, trailing_x] - 110).max() < 25, image["image"]

"""Positions on scan events: a synthetic flyover with a synthetic DJI SRT beside it, and an image
folder with JSON sidecars; the expected positions come from the formulas the files were written with."""

import csv
import json

import cv2
import fiftyone as fo
import pytest
from square_video import Square, SquareDetector, render, write_square_video

from cvtriage.config import load_scan_config
from cvtriage.scan.pipeline import run_scan
from cvtriage.telemetry.placement import EVENT_POSITION_COLUMNS

SQUARES = [Square(0, 10, 70, 20, 40, vx=2.0), Square(1, 60, 140, 250, 100, vx=-1.0)]
FPS = 30.0


def latitude_at(t: float) -> float:
    return 45.0 + 0.001 * t


def longitude_at(t: float) -> float:
    return 7.0 - 0.002 * t


def write_srt(path, seconds: int) -> None:
    """One subtitle a second in the Phantom 4 format: GPS (longitude, latitude, satellites)."""
    blocks = []
    for second in range(seconds):
        blocks.append(
            f"{second + 1}\n00:00:{second:02d},000 --> 00:00:{second + 1:02d},000\n"
            f"F/2.8, SS 100, ISO 100, EV 0, GPS ({longitude_at(second):.6f}, {latitude_at(second):.6f}, 16), "
            f"D 10.00m, H 50.00m, H.S 0.00m/s, V.S 0.00m/s \n"
        )
    path.write_text("\n".join(blocks))


def test_flyover_events_get_the_srt_positions_of_their_keyframe_start_and_end(tmp_path):
    video = write_square_video(tmp_path / "flight.mp4", SQUARES, frames=150, fps=FPS)
    write_srt(tmp_path / "flight.SRT", seconds=6)
    settings = load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset="positions-test", fps=2.0)
    result = run_scan(video, settings, model=SquareDetector())
    document = json.loads(result.outputs["events_json"].read_text())
    assert len(document["events"]) == 2
    for event in document["events"]:
        for name, time_key in (("keyframe", "best_time_s"), ("start", "first_time_s"), ("end", "last_time_s")):
            where = event["position"][name]
            assert where["latitude"] == pytest.approx(latitude_at(event[time_key]), abs=2e-6)
            assert where["longitude"] == pytest.approx(longitude_at(event[time_key]), abs=2e-6)
            assert where["height"] == pytest.approx(50.0)
    with result.outputs["events_csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(EVENT_POSITION_COLUMNS) <= set(rows[0])
    for row, event in zip(rows, document["events"]):
        assert float(row["latitude"]) == pytest.approx(event["position"]["keyframe"]["latitude"])
        assert float(row["end_longitude"]) == pytest.approx(event["position"]["end"]["longitude"])
    assert result.outputs["map"].stat().st_size > 10_000
    samples = fo.load_dataset("positions-test")
    by_event = {event["id"]: event for event in document["events"]}
    objects = {o["id"]: o for o in json.loads(result.outputs["objects_json"].read_text())["objects"]}
    fields = ["event_id", "location.point", "drone_location.point", "object_id"]
    for event_id, point, drone, object_id in zip(*samples.values(fields)):
        keyframe = by_event[event_id]["position"]["keyframe"]
        assert drone == pytest.approx([keyframe["longitude"], keyframe["latitude"]])  # GeoJSON order
        place = objects[object_id]  # `location` is the event's object on the ground
        assert by_event[event_id]["object_id"] == object_id and event_id in place["event_ids"]
        assert point == pytest.approx([place["longitude"], place["latitude"]])


def test_a_video_without_srt_has_empty_position_cells_and_no_map(tmp_path):
    video = write_square_video(tmp_path / "plain.mp4", SQUARES, frames=150, fps=FPS)
    settings = load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset=None, fps=2.0)
    result = run_scan(video, settings, model=SquareDetector())
    assert "map" not in result.outputs
    with result.outputs["events_csv"].open() as handle:
        assert all(row["latitude"] == "" for row in csv.DictReader(handle))


def test_broken_srt_is_a_warning_and_the_scan_goes_on(tmp_path, engine_log):
    video = write_square_video(tmp_path / "cut.mp4", SQUARES, frames=150, fps=FPS)
    (tmp_path / "cut.srt").write_bytes(b"")
    settings = load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset=None, fps=2.0)
    result = run_scan(video, settings, model=SquareDetector())
    assert len(result.events) == 2
    [warning] = engine_log
    assert warning.startswith("WARNING: ") and "cut.srt: empty SRT file; events get no positions" in warning


def test_image_folder_events_get_the_position_of_their_keyframe_sidecar(tmp_path):
    folder = tmp_path / "survey"
    folder.mkdir()
    squares = [Square(0, 2, 6, 10, 10, vx=4)]
    for index in range(9):
        cv2.imwrite(str(folder / f"shot_{index:03d}.png"), render(squares, index, 160, 96))
        (folder / f"shot_{index:03d}.json").write_text(json.dumps({"gps": {"lat": 10 + index / 100, "lon": 20 - index / 100}}))
    settings = load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset=None, fps=2.0)
    result = run_scan(folder, settings, model=SquareDetector())
    [event] = json.loads(result.outputs["events_json"].read_text())["events"]
    assert event["position"]["keyframe"]["latitude"] == pytest.approx(10 + event["best_frame"] / 100)
    assert event["position"]["start"]["longitude"] == pytest.approx(20 - 2 / 100)
    assert event["position"]["end"]["latitude"] == pytest.approx(10 + 6 / 100)

"""Ground positions: the camera model, the flight log's camera fields, synthetic flights whose truth
knows each object's place (placed from their true boxes, as benchmarks/ground_positions.py does),
one object across laps, and whether a log agrees with its video."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from ground_positions import REALISTIC, errors_m, flight_files, oracle_records, place_oracle

from cvtriage.config import load_scan_config
from cvtriage.errors import CvtriageError
from cvtriage.synth.flight_log import TelemetryNoise
from cvtriage.synth.video import FlyoverSpec, build_flyover
from cvtriage.telemetry.camera import camera_in_metadata, camera_named, intrinsics
from cvtriage.telemetry.ground import radius_90, ray_to_ground
from cvtriage.telemetry.log_checks import log_disagreements
from cvtriage.telemetry.objects import OBJECTS_CSV
from cvtriage.telemetry.placement import place_events
from cvtriage.telemetry.positions import SourcePositions, srt_positions
from cvtriage.telemetry.srt import parse_srt
from cvtriage.types import VideoInfo

SMALL = {"width": 320, "height": 180, "fps": 5.0}


def test_a_pixel_lands_where_the_pinhole_geometry_says():
    camera = intrinsics(1280, 720, 24.0, None)
    height = 40.0
    # Straight down, image top north: 100 px right of the centre is east, 100 px up is north.
    east, north = ray_to_ground(camera, np.array([[height, 0, -90, 0]] * 2), np.array([740.0, 640.0]), np.array([360.0, 260.0]))
    step = 100 * height / camera.focal_px
    assert east == pytest.approx([step, 0], abs=1e-9) and north == pytest.approx([0, step], abs=1e-9)
    # Image top east: up in the image is east on the ground.
    east, north = ray_to_ground(camera, np.array([[height, 90, -90, 0]]), np.array([640.0]), np.array([260.0]))
    assert (east[0], north[0]) == pytest.approx((step, 0), abs=1e-9)
    # Looking 45 degrees down towards north: the centre is as far ahead as the camera is high;
    # a pixel above the horizon never reaches the ground.
    east, north = ray_to_ground(camera, np.array([[height, 0, -45, 0]] * 2), np.array([640.0, 640.0]), np.array([360.0, 0.0]))
    assert (east[0], north[0]) == pytest.approx((0, height), abs=1e-9)
    level = ray_to_ground(camera, np.array([[height, 0, -10, 0]]), np.array([640.0]), np.array([0.0]))
    assert np.isnan(level[0]).all()
    assert radius_90(np.eye(2)) == pytest.approx(2.146, abs=0.03)  # sqrt(-2 ln 0.1)


def test_focal_length_comes_from_the_log_else_the_camera_table():
    mavic3 = camera_named("mavic-3")
    assert intrinsics(3840, 2160, 24.0, mavic3).focal_px == pytest.approx(2664.4, abs=0.5)  # 12.0 mm on 17.3 mm
    assert intrinsics(3840, 2160, None, mavic3).assumed == ()
    assert "camera unknown" in intrinsics(3840, 2160, None, None).assumed[0]
    assert camera_in_metadata({"encoder": "DJI Mavic 3 Enterprise"}).name.startswith("Mavic 3 Enterprise")
    assert camera_in_metadata({"encoder": "Lavf60"}) is None
    with pytest.raises(CvtriageError, match="camera 'Skydio': not in the table of DJI cameras"):
        camera_named("Skydio")


def test_enterprise_camera_fields_and_clock_timed_blocks(tmp_path):
    enterprise = tmp_path / "m3e.SRT"
    enterprise.write_text(
        "1\n00:00:00,000 --> 00:00:00,033\n<font size=\"28\">FrameCnt: 1, DiffTime: 33ms\n2024-05-14 10:00:00.000\n"
        "[iso: 100] [focal_len: 240] [latitude: 46.2044000] [longitude: 6.1432000] [rel_alt: 35.000 abs_alt: 435.000] "
        "[gb_yaw: -120.5 gb_pitch: -60.0 gb_roll: 0.5] </font>\n"
    )
    where = parse_srt(enterprise).records[0].position
    assert (where.gimbal_yaw, where.gimbal_pitch, where.gimbal_roll, where.focal_35mm, where.height) == (239.5, -60.0, 0.5, 24.0, 35.0)
    # Older Mavic 2 firmware: no time codes, a counter, a date-time and the fields, one block a second.
    old = tmp_path / "mavic2.SRT"
    old.write_text("".join(
        f"{n + 1}\n2019-04-21 14:03:{10 + n:02d}\n[iso : 100] [latitude : {46.2 + n / 1e4:.4f}] [longtitude : 6.1432] "
        f"[altitude: 412.5]\n\n" for n in range(5)
    ))  # fmt: skip
    log = parse_srt(old)
    assert log.timed_by_clock and [r.start_s for r in log.records] == [0, 1, 2, 3, 4]
    assert log.records[2].position.latitude == pytest.approx(46.2002)
    started_later = parse_srt(old, video_start=datetime(2019, 4, 21, 14, 3, 12))  # the video began mid-log
    assert [r.start_s for r in started_later.records] == [-2, -1, 0, 1, 2]
    (tmp_path / "junk.SRT").write_text("1\nnot a date\nsome text\n")
    with pytest.raises(CvtriageError, match="no subtitle with a time line"):
        parse_srt(tmp_path / "junk.SRT")


def test_a_log_that_disagrees_with_its_video_is_a_warning_naming_what(tmp_path):
    path = tmp_path / "flight.SRT"
    path.write_text("".join(
        f"{n + 1}\n00:00:{n // 50:02d},{n % 50 * 20:03d} --> 00:00:{(n + 1) // 50:02d},{(n + 1) % 50 * 20:03d}\n"
        f"FrameCnt: {n + 1}\n2022-08-07 13:40:40.000\n[focal_len: 22.00] [latitude: 41.42] [longitude: 2.23] [altitude: 117.0]\n\n"
        for n in range(100)
    ))  # fmt: skip
    log = parse_srt(path)  # 2 s at 50 subtitles a second
    video = VideoInfo(Path("flight.mp4"), "video", 1280, 720, 30.0, 1800, 60.0)
    recorded = {"creation_time": "2023-01-01T09:00:00.000000Z"}
    lines = log_disagreements(log, video, recorded, camera_named("Mavic 2 Pro"))
    assert len(lines) == 4 and all(line.startswith("flight.SRT: ") for line in lines)
    assert "covers 0.0-2.0 s of the 60.0 s video" in lines[0]
    assert "logged on 2022-08-07, the video was recorded on 2023-01-01" in lines[1]
    assert "logs 50 subtitles a second, the video has 30 frames a second" in lines[2]
    assert "its lens (22 mm, 35 mm-equivalent) is wider than the Mavic 2 Pro" in lines[3]
    assert log_disagreements(log, VideoInfo(Path("flight.mp4"), "video", 1280, 720, 50.0, 100, 2.0), {}, None) == []


def test_synthetic_flight_events_land_on_their_objects(tmp_path):
    srt, truth, _ = flight_files(tmp_path, FlyoverSpec(seconds=20, seed=1, **SMALL))
    records, placement = place_oracle(srt, truth, tmp_path / "results")
    distances, held = errors_m(records)
    assert len(distances) == len(truth["objects"]) >= 2
    assert max(distances) < 0.1 and all(held)
    rows = (tmp_path / "results" / OBJECTS_CSV).read_text().splitlines()
    assert len(rows) == 1 + len(truth["objects"])  # distinct objects stay distinct
    assert placement.document["coverage"] and (tmp_path / "results" / "map.png").stat().st_size > 10_000


def test_an_event_seen_only_in_refinement_crops_is_placed_by_its_best_box(tmp_path):
    """Its track holds the boxes of whole frames only, so it has none: it was left without a
    ground position, with a warning that no position was logged at its frames."""
    srt, truth, _ = flight_files(tmp_path, FlyoverSpec(seconds=20, seed=1, **SMALL))
    records = oracle_records(truth)
    crop_only = records[0]
    best_row = next(row for row in crop_only["track"] if row[0] == crop_only["best_frame"])
    crop_only["best_box_xyxy"], crop_only["track"] = best_row[1:5], []
    video = truth["video"]
    info = VideoInfo(srt.with_suffix(".mp4"), "video", video["width"], video["height"], video["fps"],
                     video["frame_count"], video["duration_s"])  # fmt: skip
    positions, log = srt_positions(srt)
    placement = place_events(records, info, SourcePositions(positions, [], None, log), load_scan_config().positions)
    assert placement.warnings == [] and crop_only["ground_position"]["frames"] == 1
    distances, held = errors_m(records)
    assert max(distances) < 0.1 and all(held)


def test_noisy_log_moves_positions_by_about_its_errors(tmp_path):
    spec = FlyoverSpec(seconds=20, seed=1, noise=TelemetryNoise(gps_m=3.0), **SMALL)
    srt, truth, _ = flight_files(tmp_path, spec)
    distances, held = errors_m(place_oracle(srt, truth)[0])
    assert 0.3 < np.median(distances) < 12  # the exact log's error is under 0.1 m


def test_two_laps_over_one_world_are_one_object_with_two_sightings(tmp_path):
    spec = FlyoverSpec(seconds=40, seed=2, noise=REALISTIC, **SMALL)
    lap = build_flyover(spec, hide_objects=True).world.shape[1] // 2 + 1
    srt, truth, _ = flight_files(tmp_path, spec, max_world_width=lap)
    records, placement = place_oracle(srt, truth)
    by_object: dict[int, set] = {}
    for record in records:
        by_object.setdefault(record["truth"]["object"], set()).add(record["object_id"])
    twice = [obj for obj in by_object if sum(r["truth"]["object"] == obj for r in records) == 2]
    assert len(twice) >= 2
    assert all(len(by_object[obj]) == 1 for obj in by_object)  # every object's passes are one object
    assert len(placement.document["objects"]) == len(by_object)  # and no two objects became one

"""The DJI SRT adapter on the real flight logs in ../shared/data/telemetry/dji_srt (skipped when
absent). The expected positions were read off the files by eye, one model/firmware format each;
the subtitle count is the file's own count of `-->` time lines."""

import pytest

from cvtriage.errors import CvtriageError
from cvtriage.telemetry.srt import parse_srt

# file: (subtitles with a position, first (latitude, longitude), last (latitude, longitude))
EXPECTED = {
    "MAVIC3.srt": (12318, (3.41531, -3.37440), (3.41368, -3.37721)),  # [latitude: ] [longitude: ]
    "air2s.srt": (17, (41.424724, 2.234156), (41.424730, 2.234102)),
    "mavic_air2.srt": (25, (41.420684, 2.162162), (41.420686, 2.162162)),
    "matrice_300.srt": (381, (36.6146, -6.1120), (36.6146, -6.1120)),  # GPS(lat,lon,altM)
    "mavic_pro.SRT": (468, (-20.2533, 149.0251), (-20.2532, 149.0251)),  # GPS(lon,lat,satellites)
    "old_format.SRT": (468, (-20.2533, 149.0251), (-20.2532, 149.0251)),
    "mavic_pro_buggy.SRT": (530, (42.4668, -1.2218), (42.4668, -1.2217)),  # 16 x GPS(N/A,N/A,n)
    "mavic_mini.SRT": (117, (48.0771, -121.7458), (48.0775, -121.7476)),  # F/2.8, ... GPS (lon, lat, n)
    "p4_rtk.SRT": (55, (-34.237922, -58.851745), (-34.232349, -58.849196)),
    "p4p_sample.SRT": (5, (47.4692, 8.2090), (47.4692, 8.2090)),
    "mix_p4rtk_mavic2pro.srt": (12, (-34.650200, -59.409424), (-34.651180, -59.409483)),  # [longtitude : ]
    "broken_incomplete.SRT": (19, (-34.7383, -58.4563), (-34.7383, -58.4563)),
    "broken_incomplete2.SRT": (4, (-34.869950, -57.823395), (-34.869945, -57.823383)),
}


@pytest.fixture(scope="module")
def srt_dir(shared_data):
    return shared_data / "telemetry" / "dji_srt"


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_real_format_gives_its_positions_in_time_order(srt_dir, name):
    count, first, last = EXPECTED[name]
    log = parse_srt(srt_dir / name)
    text = (srt_dir / name).read_text(encoding="utf-8", errors="replace")
    assert len(log.records) == text.count("-->")  # every subtitle, positioned or not
    located = log.positioned
    assert len(located) == count
    assert (located[0].position.latitude, located[0].position.longitude) == pytest.approx(first, abs=1e-6)
    assert (located[-1].position.latitude, located[-1].position.longitude) == pytest.approx(last, abs=1e-6)
    starts = [record.start_s for record in log.records]
    assert starts == sorted(starts) and all(record.end_s >= record.start_s for record in log.records)


@pytest.mark.shared
def test_frame_counters_and_device_clock_are_read(srt_dir):
    log = parse_srt(srt_dir / "MAVIC3.srt")
    assert [record.counter for record in log.records] == list(range(1, 12319))
    assert log.records[0].position.time == "2021-12-25T12:27:52.373000"
    assert log.records[0].position.height == pytest.approx(-2.4)  # rel_alt; abs_alt is the altitude
    assert log.records[0].position.altitude == pytest.approx(0.401)
    p4 = parse_srt(srt_dir / "p4_rtk.SRT").records[0].position
    assert (p4.height, p4.heading, p4.altitude) == (85.80, 110.1, None)  # H, F.PRY yaw; 15 is satellites


@pytest.mark.shared
@pytest.mark.parametrize(
    "name, line, problem",
    [
        ("broken_incomplete.SRT", 116, "no position (subtitle cut off?)"),  # the last subtitle, cut
        ("broken_incomplete2.SRT", 14, "no position (subtitle cut off?) (and 1 more"),  # `[latit` mid-file
        ("mavic_pro_buggy.SRT", 86, "no GPS fix (N/A) (and 15 more"),
    ],
)
def test_broken_subtitles_are_warnings_naming_the_line(srt_dir, name, line, problem):
    warnings = parse_srt(srt_dir / name).warnings
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{srt_dir / name}: line {line}: {problem}")
    assert (srt_dir / name).read_text(encoding="utf-8-sig").splitlines()[line - 1].count("-->") == 1


@pytest.mark.shared
@pytest.mark.parametrize(
    "name, message",
    [("broken_empty.SRT", "empty SRT file"), ("mavic_air.SRT", "none of its 2 subtitles holds a GPS position")],
)
def test_unusable_files_are_one_clear_error(srt_dir, name, message):
    with pytest.raises(CvtriageError, match=message) as error:
        parse_srt(srt_dir / name)
    assert str(error.value).startswith(str(srt_dir / name)) and "\n" not in str(error.value)


def test_a_file_that_is_not_srt_is_refused(tmp_path):
    path = tmp_path / "notes.SRT"
    path.write_text("just some text\nwith no subtitles\n")
    with pytest.raises(CvtriageError, match="no subtitle with a time line"):
        parse_srt(path)


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_real_log_plots_on_the_map(srt_dir, name, tmp_path):
    from pathlib import Path

    from cvtriage.config import PositionsConfig
    from cvtriage.telemetry.placement import place_events, write_placement
    from cvtriage.telemetry.positions import SourcePositions, srt_positions
    from cvtriage.types import VideoInfo

    positions, log = srt_positions(srt_dir / name)
    end = log.records[-1].end_s
    video = VideoInfo(Path(f"{name}.mp4"), "video", 1920, 1080, 30.0, int(end * 30), end)
    placement = place_events([], video, SourcePositions(positions, [], None, log), PositionsConfig())
    paths = write_placement(tmp_path, name, placement)
    assert len(placement.document["path"]) >= min(len(log.positioned), 2000) // 2
    assert paths["map"].stat().st_size > 10_000


@pytest.mark.shared
def test_an_oblique_camera_places_an_object_ahead_of_the_drone(srt_dir):
    """The Phantom 4 RTK logs its gimbal (G.PRY: pitch -24.4 degrees) and heading: no assumption."""
    from pathlib import Path

    from cvtriage.config import PositionsConfig
    from cvtriage.telemetry.local_frame import LocalFrame
    from cvtriage.telemetry.placement import place_events
    from cvtriage.telemetry.positions import SourcePositions, srt_positions
    from cvtriage.types import VideoInfo

    positions, log = srt_positions(srt_dir / "p4_rtk.SRT")
    video = VideoInfo(Path("p4_rtk.mp4"), "video", 1920, 1080, 1.0, 55, 55.0)
    box = [900.0, 900.0, 1020.0, 1000.0]  # below the centre: nearer than the centre's ray
    record = {"id": 1, "class": "bag", "track": [[t, *box, 0.9] for t in range(10, 13)], "best_frame": 11,
              "best_time_s": 11.0, "first_frame": 10, "first_time_s": 10.0, "last_frame": 12, "last_time_s": 12.0,
              "peak_confidence": 0.9}  # fmt: skip
    place_events([record], video, SourcePositions(positions, [], None, log), PositionsConfig())
    ground, drone = record["ground_position"], record["position"]["keyframe"]
    east, north = LocalFrame(drone["latitude"], drone["longitude"]).metres(ground["latitude"], ground["longitude"])
    assert "camera pointing straight down" not in " ".join(ground["assumed"])
    assert 60 < float((east**2 + north**2) ** 0.5) < 190  # 86 m up, looking 24 degrees down, the box lower

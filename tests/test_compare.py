"""cvtriage compare: two hand-made scans of one video with a known truth, matched by track."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cvtriage.cli import app
from cvtriage.errors import CvtriageError
from cvtriage.review.compare import (
    TrackSpan,
    best_track_iou,
    compare_runs,
    compare_scans,
    load_run,
    match_tracks,
)

FPS = 30.0
VIDEO = {"name": "flight.mp4", "kind": "video", "width": 640, "height": 480, "fps": FPS, "frame_count": 300,
         "duration_s": 10.0, "identity": {"files": 1, "size_bytes": 12345, "sha256": "ab" * 32}}  # fmt: skip

# (class, track frames, box, peak confidence), in order of first appearance (= event id order).
# Run A samples frames 0, 15, 30, ...; run B the frames 5 later: boxes are compared across that gap.
RUN_A = [
    ("ladder", range(0, 61, 15), (100, 100, 150, 200), 0.9),  # 1: B's 1, moved 5 px -> matched
    ("bag", range(90, 151, 15), (300, 300, 340, 340), 0.6),  # 2: B's 2, read as an antenna -> class changed
    ("fire extinguisher", range(180, 241, 15), (500, 50, 540, 120), 0.7),  # 3: lost
    ("person", range(195, 286, 15), (10, 400, 60, 450), 0.5),  # 4: B's 3 at the same time, far away -> lost
]
RUN_B = [
    ("ladder", range(5, 66, 15), (105, 100, 155, 200), 0.95),
    ("antenna", range(95, 151, 15), (300, 300, 340, 340), 0.55),
    ("person", range(200, 291, 15), (560, 400, 610, 450), 0.6),  # 3: gained (not A's 4)
    ("ladder", range(245, 291, 15), (200, 200, 260, 260), 0.4),  # 4: gained
]
EXPECTED_CSV = [
    ["status", "a_id", "a_class", "a_first_s", "a_last_s", "a_peak",
     "b_id", "b_class", "b_first_s", "b_last_s", "b_peak", "iou"],
    ["matched", "1", "ladder", "0.0", "2.0", "0.9", "1", "ladder", "0.167", "2.167", "0.95", "0.818"],
    ["class changed", "2", "bag", "3.0", "5.0", "0.6", "2", "antenna", "3.167", "4.667", "0.55", "1.0"],
    ["lost", "3", "fire extinguisher", "6.0", "8.0", "0.7", "", "", "", "", "", ""],
    ["lost", "4", "person", "6.5", "9.5", "0.5", "", "", "", "", "", ""],
    ["gained", "", "", "", "", "", "3", "person", "6.667", "9.667", "0.6", ""],
    ["gained", "", "", "", "", "", "4", "ladder", "8.167", "9.667", "0.4", ""],
]  # fmt: skip


def write_scan(folder: Path, events, weights: str = "old.pt", video: dict | None = None, tracks: bool = True) -> Path:
    """A minimal but complete scan results folder (events.json, detections.csv) holding `events`."""
    classes = sorted({name for name, *_ in events})
    records = []
    for number, (name, frames, box, peak) in enumerate(events, start=1):
        frames = list(frames)
        record = {
            "id": number, "class": name, "class_id": classes.index(name), "track_id": 100 + number,
            "first_frame": frames[0], "last_frame": frames[-1],
            "first_time_s": round(frames[0] / FPS, 3), "last_time_s": round(frames[-1] / FPS, 3),
            "peak_confidence": peak, "best_frame": frames[0], "best_box_xyxy": list(box), "frames_seen": len(frames),
            "track": [[frame, *box, peak] for frame in frames],
        }  # fmt: skip
        if not tracks:
            del record["track"]
        records.append(record)
    document = {
        "video": {"path": f"/videos/{(video or VIDEO)['name']}", **(video or VIDEO)},
        "settings": {"weights": f"weights/{weights}", "conf": 0.3, "out": str(folder.parent), "dataset": None},
        "classes": {str(index): name for index, name in enumerate(classes)},
        "events": records,
    }
    folder.mkdir(parents=True)
    (folder / "events.json").write_text(json.dumps(document))
    (folder / "detections.csv").write_text("frame,time_s,timecode,class_id,class_name,confidence,x1,y1,x2,y2\n")
    return folder


@pytest.fixture
def scans(tmp_path) -> tuple[Path, Path]:
    return write_scan(tmp_path / "a" / "flight", RUN_A), write_scan(tmp_path / "b" / "flight", RUN_B, weights="new.pt")


def _csv_cells(rows: list[dict]) -> list[list[str]]:
    return [["" if value is None else str(value) for value in row.values()] for row in rows]


def test_matches_by_track_whatever_the_class(scans):
    comparison = compare_runs(load_run(scans[0]), load_run(scans[1]))
    assert comparison.max_frame_gap == 15
    assert _csv_cells(comparison.rows) == EXPECTED_CSV[1:]
    assert comparison.counts == {"matched": 1, "class changed": 1, "lost": 2, "gained": 2}


def test_best_track_iou_compares_nearest_frames_within_the_gap():
    box = (0.0, 0.0, 10.0, 10.0)
    a = TrackSpan(0, 40, {0: box, 40: box})
    assert best_track_iou(a, TrackSpan(20, 20, {20: box}), max_frame_gap=15) == 0.0  # 20 frames from both
    assert best_track_iou(a, TrackSpan(30, 30, {30: box}), max_frame_gap=15) == 1.0
    # Either track's boxes look for the other's: B's one box, 10 frames after A's last.
    assert best_track_iou(TrackSpan(0, 0, {0: box}), TrackSpan(0, 10, {10: box}), 15) == 1.0


def test_match_tracks_prefers_the_pair_sharing_most_frames():
    box = (0.0, 0.0, 10.0, 10.0)
    long = TrackSpan(0, 100, {frame: box for frame in range(0, 101, 10)})
    short = TrackSpan(90, 100, {90: box, 100: box})
    longer = TrackSpan(0, 80, {frame: box for frame in range(0, 81, 10)})
    assert match_tracks([long], [short, longer], max_frame_gap=5, min_iou=0.3) == [(0, 1, 1.0)]
    assert match_tracks([long, long], [short, longer], max_frame_gap=5, min_iou=0.3) == [(0, 1, 1.0), (1, 0, 1.0)]
    assert match_tracks([long], [short], max_frame_gap=5, min_iou=1.01) == []


def test_cli_writes_csv_json_png(scans, tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(scans[0]), str(scans[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "class changed" in result.output and str(out) in result.output
    with (out / "compare.csv").open(newline="") as handle:
        assert list(csv.reader(handle)) == EXPECTED_CSV
    document = json.loads((out / "compare.json").read_text())
    assert document["counts"] == {"matched": 1, "class changed": 1, "lost": 2, "gained": 2}
    assert document["runs"]["a"]["weights"] == "weights/old.pt" and document["runs"]["b"]["events"] == 4
    assert document["settings_differ"] == {"weights": ["weights/old.pt", "weights/new.pt"]}
    assert len(document["rows"]) == 6
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")
    # Running again replaces the previous comparison; nothing else is left beside it.
    assert CliRunner().invoke(app, ["compare", str(scans[0]), str(scans[1]), "--out", str(out)]).exit_code == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b", "cmp"]


def test_default_out_names_video_and_both_scans(scans, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    again = tmp_path / "again" / "flight"
    shutil.copytree(scans[0], again)
    comparison = compare_scans(scans[0], again)  # the same scan twice: everything matches
    assert comparison.outputs["out_dir"] == tmp_path / "runs/compare/flight-a-vs-again"
    assert comparison.counts == {"matched": 4, "class changed": 0, "lost": 0, "gained": 0}


def test_refuses_to_replace_a_folder_that_is_not_a_comparison(scans, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CvtriageError, match="not a cvtriage compare folder"):
        compare_scans(scans[0], scans[1], out=out)
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b", "mine"]  # no partial folder left


def _one_error_line(result) -> str:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvtriage: error: "), result.output
    return lines[0]


def test_cli_refuses_scans_of_different_videos(scans, tmp_path):
    other = write_scan(tmp_path / "c" / "other", RUN_B, video={**VIDEO, "name": "other.mp4",
                                                               "identity": {"files": 1, "size_bytes": 9, "sha256": "cd" * 32}})  # fmt: skip
    line = _one_error_line(CliRunner().invoke(app, ["compare", str(scans[0]), str(other), "--out", str(tmp_path / "x")]))
    assert "different videos" in line and "flight.mp4" in line and "other.mp4" in line
    assert not (tmp_path / "x").exists()
    # Without a recorded identity: name, length and frame size decide.
    longer = write_scan(tmp_path / "d" / "flight", RUN_B, video={**VIDEO, "frame_count": 301, "identity": None})
    line = _one_error_line(CliRunner().invoke(app, ["compare", str(scans[0]), str(longer)]))
    assert "300 frames" in line and "301 frames" in line


def test_cli_bad_folders_are_one_line(scans, tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "events.json" in _one_error_line(runner.invoke(app, ["compare", str(empty), str(scans[1])]))
    assert "events.json" in _one_error_line(runner.invoke(app, ["compare", str(tmp_path / "nope"), str(scans[1])]))
    # The scan's --out folder instead of the video's folder inside it: the right one is named.
    assert str(scans[0]) in _one_error_line(runner.invoke(app, ["compare", str(tmp_path / "a"), str(scans[1])]))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "events.json").write_text("{not json")
    _one_error_line(runner.invoke(app, ["compare", str(broken), str(scans[1])]))
    old = write_scan(tmp_path / "old" / "flight", RUN_A, tracks=False)
    assert "track" in _one_error_line(runner.invoke(app, ["compare", str(old), str(scans[1])]))
    assert "the same results folder as A" in _one_error_line(runner.invoke(app, ["compare", str(scans[1]), str(scans[1]) + "/"]))

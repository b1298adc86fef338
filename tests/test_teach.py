"""cvtriage teach: one turn of the review loop in one command. Bad inputs are one line and write
nothing; a turn stopped at any step resumes where it stopped; a whole turn on a short synthetic
flyover (slow: it trains one tiny model) harvests, trains, rescans into the next dataset and
compares."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from square_video import Square, SquareDetector, write_square_video
from typer.testing import CliRunner
from yolo_factory import write_yolo_dataset

from cvtriage.cli import app
from cvtriage.config import load_harvest_config, load_scan_config, load_train_config
from cvtriage.errors import CvtriageError
from cvtriage.review.teach import LOOP_INFO, TURN_JSON, TurnSettings, teach
from cvtriage.scan.pipeline import run_scan

runner = CliRunner()
SQUARES = [Square(0, 10, 70, 20, 40), Square(1, 50, 100, 200, 40)]


def one_line_error(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("cvtriage: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def squares_dataset(tmp_path):
    """A scan of a squares video by the stand-in detector (recorded weights: a file that is no
    model), in a dataset of its own: (dataset name, video, turn settings)."""
    import fiftyone as fo

    video = write_square_video(tmp_path / "squares.mp4", SQUARES, frames=150)
    name = f"test-teach-{uuid.uuid4().hex[:8]}"
    scan = load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset=name, fps=2.0, weights=str(tmp_path / "squares.pt"))
    run_scan(video, scan, model=SquareDetector())
    base = write_yolo_dataset(tmp_path / "base", {"train": 2, "val": 2}).parent
    settings = TurnSettings(load_harvest_config(), load_train_config(epochs=1, imgsz=64, device="cpu"), merge=base,
                            out=tmp_path / "teach")  # fmt: skip
    yield name, video, settings
    fo.delete_dataset(name)


def test_bad_inputs_are_one_line_and_write_nothing(squares_dataset, tmp_path):
    import fiftyone as fo

    name, video, settings = squares_dataset
    out = str(settings.out)
    assert "no FiftyOne dataset named 'nope'" in one_line_error(runner.invoke(app, ["teach", "nope", "--out", out]))
    assert "no event has a decision yet" in one_line_error(runner.invoke(app, ["teach", name, "--out", out]))
    fo.load_dataset(name).take(1).tag_samples("confirmed")
    moved = video.with_name("moved.mp4")
    video.rename(moved)
    try:
        assert "the scanned video is gone" in one_line_error(runner.invoke(app, ["teach", name, "--out", out]))
    finally:
        moved.rename(video)
    assert "--next-dataset a/b" in one_line_error(runner.invoke(app, ["teach", name, "--out", out, "--next-dataset", "a/b"]))
    # The rescan's confidence, checked before harvest and training (its scan once failed after them).
    bad_conf = runner.invoke(app, ["teach", name, "--out", out, "--conf", "2"])
    assert "--conf 2: expected a confidence between 0 and 1" in one_line_error(bad_conf)
    assert not settings.out.exists()


def test_a_stopped_turn_resumes_and_refuses_other_settings(squares_dataset):
    """Harvest done, then training fails (the scan's weights are no model): the turn records the
    harvest and starts from training next time, but only with the settings it started with."""
    import fiftyone as fo

    name, _, settings = squares_dataset
    fo.load_dataset(name).tag_samples("class:car")  # a class of the merge target's
    with pytest.raises(CvtriageError, match="squares.pt"):
        teach(name, settings)
    folder = settings.out / name / "turn-1"
    manifest = json.loads((folder / TURN_JSON).read_text())
    assert manifest["steps"]["harvest"]["done"] and "train" not in manifest["steps"]
    harvested = (folder / "data" / "manifest.json").stat().st_mtime_ns
    other = TurnSettings(settings.harvest, load_train_config(epochs=2, imgsz=64, device="cpu"), settings.merge, out=settings.out)
    with pytest.raises(CvtriageError, match=r"started with other settings \(train differ\)"):
        teach(name, other)
    shown = []
    with pytest.raises(CvtriageError, match="squares.pt"):
        teach(name, settings, progress=lambda step: lambda done, total, detail="": shown.append((step, detail)))
    assert ("harvest", "done earlier") in shown
    assert (folder / "data" / "manifest.json").stat().st_mtime_ns == harvested


# --- a whole turn -------------------------------------------------------------------------------


def reviewer_decisions(dataset, video: Path) -> int:
    """Tag each event as a reviewer who knows the truth would: confirmed on the right object,
    class:<truth> on an object of another class, not-object elsewhere. Returns the events decided."""
    from cvtriage.boxes import iou_matrix

    truth = json.loads(video.with_suffix(".truth.json").read_text())
    boxes = {(int(row[0]), record["class_name"]): row[1:5] for record in truth["objects"] for row in record["boxes"]}
    for sample in dataset:
        [own] = [label for label in sample.detections.detections if "event" in label.tags]
        x, y, w, h = own.bounding_box
        box = [x * 640, y * 360, (x + w) * 640, (y + h) * 360]
        hits = [name for (frame, name), truth_box in boxes.items()
                if frame == sample.frame_number and iou_matrix([box], [truth_box])[0, 0] >= 0.3]  # fmt: skip
        sample.tags.append("not-object" if not hits else "confirmed" if hits[0] == sample.class_name else f"class:{hits[0]}")
        sample.save()
    return len(dataset)


@pytest.mark.slow
def test_a_turn_stopped_in_training_and_in_the_rescan_resumes_to_the_end(tmp_path):
    """A 5 s flyover scanned by the demo model and decided from its truth; the turn is stopped
    after its first training epoch and again in the rescan, and each time resumes."""
    import fiftyone as fo

    from cvtriage.paths import DEMO_WEIGHTS
    from cvtriage.synth.dataset import generate_dataset
    from cvtriage.synth.video import FlyoverSpec, generate_video

    video = generate_video(tmp_path / "flyover.mp4", FlyoverSpec(seconds=5, width=640, height=360, seed=3, objects=3)).video
    name = f"test-turn-{uuid.uuid4().hex[:8]}"
    scan = load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset=name, weights=str(DEMO_WEIGHTS), conf=0.1)
    run_scan(video, scan)
    dataset = fo.load_dataset(name)
    assert reviewer_decisions(dataset, video) >= 2
    base = tmp_path / "base"
    generate_dataset(base, images=6, imgsz=160, seed=1, max_size=60)
    settings = TurnSettings(load_harvest_config(), load_train_config(epochs=2, imgsz=160, device="cpu"), merge=base,
                            out=tmp_path / "teach")  # fmt: skip

    def stop_at(step: str, call: int):
        calls = {"n": 0}

        def progress(name: str):
            def on_progress(done, total, detail=""):
                calls["n"] += name == step
                if name == step and calls["n"] == call:
                    raise KeyboardInterrupt
            return on_progress
        return progress

    try:
        with pytest.raises(KeyboardInterrupt):
            teach(name, settings, progress=stop_at("train", 1))  # after epoch 1 of 2: last.pt saved
        folder = settings.out / name / "turn-1"
        assert (folder / "train" / "weights" / "last.pt").is_file() and not (folder / "train" / "metrics.json").exists()
        with pytest.raises((KeyboardInterrupt, CvtriageError)):
            teach(name, settings, progress=stop_at("scan", 3))  # the scan turns Ctrl-C into "run again to resume"
        manifest = json.loads((folder / TURN_JSON).read_text())
        assert manifest["steps"]["train"]["done"] and not manifest["steps"].get("scan", {}).get("videos")
        assert manifest["steps"]["train"]["metrics"]["epochs_run"] == 2
        assert len((folder / "train" / "results.csv").read_text().splitlines()) == 3  # a header and 2 epochs, once each

        result = runner.invoke(app, ["teach", name, "--merge", str(base), "--epochs", "2", "--imgsz", "160", "--device", "cpu",
                                     "--out", str(settings.out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "resumed" in result.stderr and "harvest, train done by an earlier run" in result.stderr
        next_name = f"{name}-turn2"
        assert f"Next turn: {len(fo.load_dataset(next_name).load_saved_view('review-queue'))} events to review in {next_name}" \
            in " ".join(result.stderr.split())
        rescan = json.loads((folder / "scan" / "flyover" / "events.json").read_text())
        assert rescan["stats"]["frames_resumed"] > 0 and rescan["settings"]["weights"] == str(folder / "train" / "weights" / "best.pt")
        assert (folder / "compare" / "flyover" / "compare.json").is_file()
        assert fo.load_dataset(next_name).info[LOOP_INFO] == {"root": name, "turn": 2, "merge": str(folder / "data")}
        assert len(fo.load_dataset(name).match_tags("confirmed")) + len(fo.load_dataset(name).match_tags("not-object")) > 0
    finally:
        for dataset_name in (name, f"{name}-turn2"):
            if fo.dataset_exists(dataset_name):
                fo.delete_dataset(dataset_name)
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)

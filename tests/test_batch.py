"""Many sources in one scan: on a real local Ray runtime (2 CPUs), failures isolated, re-runs,
a worker killed mid-batch; the sources' expansion; the command's bad-input lines."""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from square_video import SlowSquareDetector, Square, SquareDetector, write_square_video
from typer.testing import CliRunner

from cvtriage.batch.runner import run_batch
from cvtriage.batch.sources import expand_sources
from cvtriage.batch.types import ModelRecipe
from cvtriage.cli import app
from cvtriage.config import load_scan_config
from cvtriage.errors import CvtriageError
from cvtriage.scan.log import log_path
from cvtriage.scan.pipeline import run_scan

TESTS = Path(__file__).resolve().parent
FLIGHTS = {
    "north": [Square(0, 10, 70, 20, 40, vx=2.0), Square(1, 30, 89, 200, 100, vx=-1.0)],
    "south": [Square(1, 0, 50, 60, 60, vy=1.0)],
}
runner = CliRunner()


@pytest.fixture(scope="module")
def flights(tmp_path_factory) -> Path:
    """Two small videos of squares and one corrupt file, in one folder."""
    folder = tmp_path_factory.mktemp("flights")
    for name, squares in FLIGHTS.items():
        write_square_video(folder / f"{name}.mp4", squares, frames=90)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    return folder


def settings_for(out: Path, dataset: str | None):
    return load_scan_config(out=str(out), device="cpu", dataset=dataset, fps=2.0)


def scanned_alone(video: Path, tmp_path: Path) -> list:
    """The events.json events of the video scanned by itself, the single-scan way."""
    result = run_scan(video, settings_for(tmp_path / "alone", None), model=SquareDetector())
    return json.loads((result.out_dir / "events.json").read_text())["events"]


def events_of(folder: Path) -> list:
    return json.loads((folder / "events.json").read_text())["events"]


def samples_by_video(dataset_name: str) -> dict[str, list[int]]:
    import fiftyone as fo

    dataset = fo.load_dataset(dataset_name)
    by_video: dict[str, list[int]] = {}
    for video, event_id in zip(dataset.values("source_video"), dataset.values("event_id")):
        by_video.setdefault(Path(video).stem, []).append(event_id)
    return {video: sorted(ids) for video, ids in by_video.items()}


def test_ray_batch_isolates_the_corrupt_video_and_a_rerun_skips_finished_ones(ray_runtime, flights, tmp_path):
    dataset = f"test-batch-{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path / "runs", dataset)
    recipe = ModelRecipe("squares", SquareDetector)
    report = run_batch(expand_sources([flights]), settings, ray_address="auto", recipe=recipe)

    status = {outcome.source.name: outcome for outcome in report.outcomes}
    assert [status[name].status for name in ("broken.mp4", "north.mp4", "south.mp4")] == ["failed", "scanned", "scanned"]
    assert "broken.mp4" in status["broken.mp4"].reason and "not a video" in status["broken.mp4"].reason
    assert report.runner.startswith("Ray, 1 node: 2 CPUs")
    for name in FLIGHTS:
        assert events_of(tmp_path / "runs" / name) == scanned_alone(flights / f"{name}.mp4", tmp_path)
    stored = samples_by_video(dataset)
    assert stored == {name: [e["id"] for e in events_of(tmp_path / "runs" / name)] for name in FLIGHTS}
    assert stored["north"] and stored["south"]
    written = json.loads(report.batch_json.read_text())
    assert written["failed"] == 1 and [v["status"] for v in written["videos"]] == ["failed", "scanned", "scanned"]

    again = run_batch(expand_sources([flights]), settings, ray_address="auto", recipe=recipe)
    assert [o.status for o in again.outcomes] == ["failed", "finished earlier", "finished earlier"]
    assert [o.events for o in again.outcomes[1:]] == [len(stored["north"]), len(stored["south"])]
    assert samples_by_video(dataset) == stored


def test_a_worker_killed_mid_batch_is_retried_and_resumes_from_its_log(ray_runtime, flights, tmp_path):
    dataset = f"test-batch-kill-{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path / "runs", dataset)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    # A partial is picklable: each task builds a detector that says which process it runs in.
    recipe = ModelRecipe("squares", functools.partial(SlowSquareDetector, 0.15, str(pid_dir)))
    sources = expand_sources([flights / "north.mp4", flights / "south.mp4"])
    killed: list[int] = []

    def kill_a_worker_mid_video() -> None:
        deadline = time.time() + 120
        logs = [log_path(settings, flights / f"{name}.mp4") for name in FLIGHTS]
        while time.time() < deadline:
            lines = [len(log.read_text().splitlines()) if log.exists() else 0 for log in logs]
            if max(lines) >= 5:  # header + 4 frames: well into a video of ~20 inferred frames
                pid = int(min(pid_dir.iterdir(), key=lambda p: p.stat().st_mtime).name)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker_mid_video)
    killer.start()
    report = run_batch(sources, settings, ray_address="auto", recipe=recipe)
    killer.join()

    assert killed, "no worker was killed"
    assert {o.status for o in report.outcomes} <= {"scanned", "resumed"} and "resumed" in {o.status for o in report.outcomes}
    for name in FLIGHTS:
        assert events_of(tmp_path / "runs" / name) == scanned_alone(flights / f"{name}.mp4", tmp_path)
    assert samples_by_video(dataset) == {name: [e["id"] for e in events_of(tmp_path / "runs" / name)] for name in FLIGHTS}


def test_a_batch_in_this_process_resumes_an_interrupted_video_and_scans_the_rest(flights, tmp_path):
    settings = settings_for(tmp_path / "runs", None)
    north = flights / "north.mp4"
    log = log_path(settings, north)
    log.parent.mkdir(parents=True)
    run_scan(north, settings, model=SquareDetector())
    header, *frames, _complete = log.read_text().splitlines()
    log.write_text("\n".join([header, *frames[:5]]) + "\n")  # as if killed after five frames

    report = run_batch(expand_sources([north, flights / "south.mp4"]), settings, recipe=ModelRecipe("squares", SquareDetector))
    assert [(o.source.name, o.status) for o in report.outcomes] == [("north.mp4", "resumed"), ("south.mp4", "scanned")]
    assert events_of(tmp_path / "runs" / "north") == scanned_alone(north, tmp_path)
    assert json.loads(log.read_text().splitlines()[-1]) == {"complete": True}


class CountedSquareDetector(SquareDetector):
    """A SquareDetector that counts how often one is built in this process."""

    built = 0

    def __init__(self):
        super().__init__()
        CountedSquareDetector.built += 1


def test_a_worker_loads_its_model_once_for_all_the_videos_it_gets(flights, tmp_path):
    import pickle

    from cvtriage.batch.ray_tasks import _scan_task

    settings = settings_for(tmp_path / "runs", None)
    recipe = ModelRecipe("squares", CountedSquareDetector)
    for name in FLIGHTS:  # Ray sends each task its own copy of the recipe
        outcome = _scan_task(str(flights / f"{name}.mp4"), settings, pickle.loads(pickle.dumps(recipe)))
        assert outcome.status == "scanned" and outcome.events
    assert CountedSquareDetector.built == 1


def test_gpus_per_video_auto_shares_each_gpu_between_four_videos():
    from cvtriage.batch.ray_tasks import GPU_SHARE_PER_VIDEO, gpus_per_video

    assert GPU_SHARE_PER_VIDEO == 0.25
    assert gpus_per_video("auto", 1, "auto") == gpus_per_video("auto", 8, "0") == 0.25
    assert gpus_per_video("auto", 0, "auto") == gpus_per_video("auto", 2, "cpu") == gpus_per_video("auto", 2, "CPU") == 0
    assert gpus_per_video(0.5, 0, "cpu") == 0.5 and gpus_per_video(1, 4, "auto") == 1


def test_a_request_no_node_can_run_names_itself_and_the_largest_node():
    from cvtriage.batch.ray_tasks import unfit_request

    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 16.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]  # fmt: skip
    assert unfit_request(4, 1, nodes) is None and unfit_request(8, 0, nodes) is None and unfit_request(1, 0.25, nodes) is None
    assert unfit_request(8, 1, nodes) == "each video asks Ray for 8 CPUs and 1 GPU, and no node has that many (the largest: 4 CPUs, 1 GPU)"
    assert unfit_request(32, 0, nodes).endswith("(the largest: 4 CPUs, 1 GPU)")  # the dead node counts for nothing
    assert unfit_request(1, 0, []).endswith("(the largest: 0 CPUs, 0 GPUs)")


def test_cli_a_batch_no_node_of_the_runtime_it_started_can_run_fails_in_one_line(flights, tmp_path):
    """Ray would keep such tasks waiting for a node that, on a runtime started here, never comes."""
    settings = tmp_path / "big-batch.yaml"
    settings.write_text("cpus_per_video: 64\n")
    out = tmp_path / "runs"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # not the tests' runtime
    result = subprocess.run(
        [sys.executable, "-m", "cvtriage.cli", "scan", str(flights / "north.mp4"), str(flights / "south.mp4"), "--ray", "auto",
         "--batch-config", str(settings), "--weights", "yolo11n.yaml", "--imgsz", "64", "--device", "cpu", "--no-dataset",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    one_error_line(result, "--batch-config", "asks Ray for 64 CPUs", "the largest:", "lower cpus_per_video")
    assert not list(out.glob("*/events.json")) and not (out / "batch.json").exists()  # nothing scanned, nothing reported


# --- what the arguments name --------------------------------------------------------------------


def test_sources_from_folders_globs_and_list_files(flights, tmp_path):
    listing = tmp_path / "week.txt"
    listing.write_text(f"# Monday\n{flights / 'north.mp4'}\n\nmissing-flight.mp4\n{flights / 'south.mp4'}\n")
    sources = expand_sources([str(flights / "*.mp4"), listing, flights])
    assert [p.name for p in sources.paths] == ["broken.mp4", "north.mp4", "south.mp4"]  # each once
    assert sources.missing == [("missing-flight.mp4", f"listed in {listing} line 4: file not found")]
    assert not sources.single and expand_sources([flights / "north.mp4"]).single
    stills = tmp_path / "stills"
    stills.mkdir()
    (stills / "a.png").write_bytes(b"")
    assert expand_sources([stills]).paths == [stills] and expand_sources([stills]).single  # an image folder, as before
    with pytest.raises(CvtriageError, match="no file matches this pattern"):
        expand_sources([str(tmp_path / "nothing-*.mp4")])
    # A .txt of notes is not a list of sources: it was "scanned", every line missing, as a batch.
    notes = tmp_path / "notes.txt"
    notes.write_text("Flight plan for Monday\nCheck the ladders on the roof\n")
    with pytest.raises(CvtriageError, match=r"notes\.txt: none of its 2 lines names a file that exists"):
        expand_sources([notes])
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(CvtriageError, match="it names no source"):
        expand_sources([tmp_path / "empty.txt"])


# --- the command line ---------------------------------------------------------------------------


def one_error_line(result, *fragments: str) -> str:
    lines = result.output.strip().splitlines() if hasattr(result, "output") else result.stderr.strip().splitlines()
    assert result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert len(lines) == 1 and lines[0].startswith("cvtriage: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_cli_list_file_with_missing_paths_scans_the_rest_and_exits_non_zero(flights, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{flights / 'south.mp4'}\ngone.mp4\n")
    result = runner.invoke(app, ["scan", str(listing), "--weights", "yolo11n.yaml", "--imgsz", "64", "--every", "30",
                                 "--device", "cpu", "--no-dataset", "--out", str(tmp_path / "runs")])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "missing" in result.output and "gone.mp4" in result.output and "1 failed" in result.output
    batch = json.loads((tmp_path / "runs" / "batch.json").read_text())
    assert [(Path(v["source"]).name, v["status"]) for v in batch["videos"]] == [("south.mp4", "scanned"), ("gone.mp4", "missing")]
    assert (tmp_path / "runs" / "south" / "events.json").is_file()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_bad_batch_inputs_are_one_line_each(flights, tmp_path):
    started = time.perf_counter()
    port = free_port()
    one_error_line(runner.invoke(app, ["scan", str(flights / "north.mp4"), "--ray", f"ray://127.0.0.1:{port}", "--no-dataset"]),
                   f"--ray ray://127.0.0.1:{port}", "nothing answers")  # fmt: skip
    assert time.perf_counter() - started < 10
    one_error_line(runner.invoke(app, ["scan", str(tmp_path / "*.MOV"), "--no-dataset"]), "*.MOV", "no file matches")
    one_error_line(runner.invoke(app, ["scan", str(flights / "north.mp4"), "--dataset", "my scans"]), "dataset", "'my scans'")


def test_cli_batch_config_file_is_checked_before_any_video_is_scanned(flights, tmp_path):
    """Fails if --batch-config is not read (an unknown option), or read only once videos are scanned."""
    settings = tmp_path / "my-batch.yaml"
    settings.write_text("gpus_per_video: 0.5\nmax_retrys: 2\n")
    out = tmp_path / "runs"
    result = runner.invoke(app, ["scan", str(flights / "north.mp4"), str(flights / "south.mp4"), "--batch-config", str(settings),
                                 "--no-dataset", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2  # a settings file's mistake, as for --config
    one_error_line(result, "my-batch.yaml", "max_retrys")
    assert not out.exists()


def test_cli_unreachable_database_is_one_line_naming_the_uri_without_its_password(flights, tmp_path):
    uri = f"mongodb://scanner:s3cret@127.0.0.1:{free_port()}/"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cvtriage.cli", "scan", str(flights / "north.mp4"), "--out", str(tmp_path / "runs")],
        env={**os.environ, "FIFTYONE_DATABASE_URI": uri}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    line = one_error_line(result, "mongodb://scanner:***@127.0.0.1", "did not answer")
    assert "s3cret" not in result.stderr + result.stdout and "s3cret" not in line
    assert time.perf_counter() - started < 60  # imports included; the database gets 5 s
    assert not (tmp_path / "runs").exists()  # nothing scanned

"""Review: exporting reviewed labels back to YOLO (class order kept across splits, edits and
reject tags honoured), opening datasets in the FiftyOne App (checked in a real headless
Chromium), and the one-line errors for unknown datasets, views and busy ports."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import cv2
import fiftyone as fo
import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from cvtriage.cli import app
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import read_yolo_dataset
from cvtriage.review.app import check_port_free, launch_review_app, load_review_dataset
from cvtriage.review.export import export_reviewed_labels

CLASSES = ["car", "person", "boat", "truck"]
# val lacks car and person: exported on its own, FiftyOne would number its classes truck=0,
# boat=1 (fiftyone#1952) unless the class list is passed for every split.
BOXES = {
    "train": [["car", "person"], ["boat", "truck"], ["person"], ["car", "truck", "boat"]],
    "val": [["truck"], ["boat", "truck"]],
}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--no-first-run",
]


def stop_app(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops `cvtriage app`; killed when it has not stopped within 60 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def app_page(playwright, profile: Path, url: str, last_seen: Path | None = None):
    """The App at `url` in headless Chromium (a profile of its own), once its grid shows counts;
    `last_seen`: a screenshot of what the page showed last, for a failure's report."""
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True,
        viewport={"width": 1400, "height": 900},
    )  # fmt: skip
    try:
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=120_000)
        page.locator('[data-cy="entry-counts"]').wait_for(timeout=120_000)
        yield page
    finally:
        if last_seen is not None:
            for open_page in context.pages:
                open_page.screenshot(path=str(last_seen))
        context.close()


def _box(index: int) -> list[float]:
    """Distinct, non-overlapping boxes (top-left x, y, width, height; relative)."""
    return [0.05 + 0.3 * (index % 3), 0.1 + 0.4 * (index // 3), 0.2, 0.25]


@pytest.fixture
def labelled_dataset(tmp_path):
    """A persistent dataset as audit-labels leaves it: ground_truth, default_classes, split tags."""
    dataset = fo.Dataset(f"test-review-{uuid.uuid4().hex[:8]}")
    dataset.persistent = True
    dataset.default_classes = CLASSES
    dataset.info["data_yaml"] = str(tmp_path / "source" / "data.yaml")
    (tmp_path / "media").mkdir()
    samples = []
    for split, images in BOXES.items():
        for index, labels in enumerate(images):
            image_path = tmp_path / "media" / f"{split}_{index}.jpg"
            cv2.imwrite(str(image_path), np.full((48, 64, 3), 30 + 20 * index, np.uint8))
            detections = [fo.Detection(label=label, bounding_box=_box(i)) for i, label in enumerate(labels)]
            samples.append(fo.Sample(filepath=str(image_path), tags=[split], ground_truth=fo.Detections(detections=detections)))
    dataset.add_samples(samples, progress=False)
    yield dataset
    dataset.delete()


def _class_ids_by_image(yolo) -> dict[str, list[int]]:
    return {image.image_path.stem: sorted(box.class_id for box in image.boxes) for image in yolo.images("all")}


def test_export_keeps_class_ids_across_splits_and_the_reviewers_edits(labelled_dataset, tmp_path):
    # The reviewer relabels val_1's boat as a car, rejects one train image and one wrong label.
    edited = labelled_dataset.match_tags("val").skip(1).first()
    edited.ground_truth.detections[0].label = "car"
    edited.save()
    rejected = labelled_dataset.match_tags("train").skip(2).first()
    rejected.tags.append("reject")
    rejected.save()
    wrong_label_sample = labelled_dataset.match_tags("train").first()
    wrong_label_sample.ground_truth.detections[1].tags.append("reject")  # the person box
    wrong_label_sample.save()

    progress = []
    out = tmp_path / "reviewed"
    result = export_reviewed_labels(labelled_dataset, out, on_progress=lambda done, total: progress.append((done, total)))

    yolo = read_yolo_dataset(out)
    assert yolo.names == CLASSES and result.names == CLASSES
    assert sorted(yolo.splits) == ["train", "val"] and not yolo.problems
    assert _class_ids_by_image(yolo) == {
        "train_0": [0],  # car, person (rejected label)
        "train_1": [2, 3],
        "train_3": [0, 2, 3],
        "val_0": [3],
        "val_1": [0, 3],  # boat -> car, the edit
    }
    assert [(s.split, s.images, s.boxes, s.skipped_samples, s.skipped_labels) for s in result.splits] == [
        ("train", 3, 6, 1, 1),
        ("val", 2, 3, 0, 0),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["data.yaml", "images", "labels"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert progress[-1] == (5, 5)  # the images written, not the rejected one

    # Box geometry survives: centre = top-left + half the size.
    val_1 = next(image for image in yolo.images("val") if image.image_path.stem == "val_1")
    truck = next(box for box in val_1.boxes if box.class_id == 3)
    assert (truck.cx, truck.cy, truck.w, truck.h) == pytest.approx((0.35 + 0.1, 0.1 + 0.125, 0.2, 0.25), abs=1e-5)


def test_export_refuses_what_would_silently_change_the_training_data(labelled_dataset, tmp_path):
    sample = labelled_dataset.match_tags("val").first()
    sample.ground_truth.detections[0].label = "tuck"  # a reviewer's typo
    sample.save()
    with pytest.raises(CvtriageError, match=r"outside the class list .*'tuck' \(1\)"):
        export_reviewed_labels(labelled_dataset, tmp_path / "out")
    sample.tags.append("reject")  # a rejected sample is not exported, so its labels do not matter
    sample.save()
    assert export_reviewed_labels(labelled_dataset, tmp_path / "typo-rejected").splits[1].images == 1
    sample.tags.remove("reject")
    sample.ground_truth.detections[0].label = "truck"
    sample.tags.append("train")  # now in train and val
    sample.save()
    with pytest.raises(CvtriageError, match="1 samples carry more than one split tag"):
        export_reviewed_labels(labelled_dataset, tmp_path / "out")
    sample.tags.remove("train")
    sample.save()
    with pytest.raises(CvtriageError, match="'val' is required"):
        export_reviewed_labels(labelled_dataset, tmp_path / "out", splits=["train"])
    with pytest.raises(CvtriageError, match="no detections field 'predictions'"):
        export_reviewed_labels(labelled_dataset, tmp_path / "out", label_field="predictions")
    assert not (tmp_path / "out").exists()

    export_reviewed_labels(labelled_dataset, tmp_path / "out")
    with pytest.raises(CvtriageError, match="already exists"):
        export_reviewed_labels(labelled_dataset, tmp_path / "out")
    # --overwrite replaces it whole: the val image rejected since is gone.
    first_val = labelled_dataset.match_tags("val").first()
    first_val.tags.append("reject")
    first_val.save()
    export_reviewed_labels(labelled_dataset, tmp_path / "out", overwrite=True)
    assert len(read_yolo_dataset(tmp_path / "out").images("val")) == 1
    # --overwrite replaces only an export: a user's folder or file is never deleted.
    (tmp_path / "out" / "flight.mp4").write_bytes(b"a user's video")
    notes = tmp_path / "notes.txt"
    notes.write_text("a user's notes")
    for target in (tmp_path / "out", notes):
        with pytest.raises(CvtriageError, match="exists and is not a YOLO dataset this command wrote"):
            export_reviewed_labels(labelled_dataset, target, overwrite=True)
    assert (tmp_path / "out" / "flight.mp4").read_bytes() == b"a user's video" and notes.read_text() == "a user's notes"


def test_export_labels_cli_prints_a_summary_and_one_line_errors(labelled_dataset, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli-out"
    result = runner.invoke(app, ["export-labels", labelled_dataset.name, str(out), "--no-skip"])
    assert result.exit_code == 0, result.output
    assert "data.yaml" in result.output and len(read_yolo_dataset(out).images("train")) == 4

    missing = runner.invoke(app, ["export-labels", "no-such-dataset-x", str(tmp_path / "x")])
    assert missing.exit_code == 2
    lines = missing.output.strip().splitlines()
    assert len(lines) == 1 and "no FiftyOne dataset named 'no-such-dataset-x'" in lines[0]
    assert labelled_dataset.name in lines[0]  # the existing datasets are listed


def test_default_dataset_is_the_newest_cvtriage_dataset(labelled_dataset):
    foreign = fo.Dataset(f"not-ours-{uuid.uuid4().hex[:8]}")  # newer, but not written by cvtriage
    try:
        assert load_review_dataset(None).name == labelled_dataset.name
        assert load_review_dataset(labelled_dataset.name).name == labelled_dataset.name
    finally:
        foreign.delete()


def test_app_errors_come_before_any_server_starts(labelled_dataset):
    with pytest.raises(CvtriageError, match=r"no saved view 'nope' \(saved views: none\)"):
        launch_review_app(labelled_dataset, port=_free_port(), view_name="nope")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CvtriageError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port_free("127.0.0.1", port)
        result = CliRunner().invoke(app, ["app", labelled_dataset.name, "--port", str(port)])
        lines = result.output.strip().splitlines()  # no "Starting the FiftyOne App ..." before the error
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith(f"cvtriage: error: port {port} on 127.0.0.1")
    result = CliRunner().invoke(app, ["app", labelled_dataset.name, "--port", str(_free_port()), "--view", "nope"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"cvtriage: error: dataset '{labelled_dataset.name}' has no saved view 'nope' (saved views: none)"
    ], result.output
    check_port_free("127.0.0.1", port)  # released: free again


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_url(process: subprocess.Popen, timeout: float) -> str:
    """The App command prints its URL on stdout once the server listens."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if process.poll() is not None:
                raise AssertionError(f"cvtriage app exited early with code {process.returncode}") from None
            continue
        if line.startswith("http://"):
            return line.strip()
    raise AssertionError("cvtriage app printed no URL in time")


@pytest.mark.slow
def test_app_shows_the_dataset_and_its_saved_views_in_a_real_browser(labelled_dataset, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    labelled_dataset.save_view("likely-mislabeled", labelled_dataset.match_tags("val"))
    labelled_dataset.save_view("audit-class", labelled_dataset.match_tags("train").limit(1))
    port = _free_port()
    command = [sys.executable, "-m", "cvtriage.cli", "app", labelled_dataset.name, "--port", str(port),
               "--view", "likely-mislabeled"]  # fmt: skip
    app_log = tmp_path / "app.log"
    with app_log.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    spawned: list[psutil.Process] = []
    try:
        url = _wait_for_url(process, timeout=180)
        assert url == f"http://127.0.0.1:{port}/"
        spawned = _app_processes(psutil.Process(process.pid).children(recursive=True))
        assert spawned, "no App server process found under the command"
        with sync_playwright() as playwright, app_page(playwright, tmp_path / "chromium-profile", url) as page:
            # --view opened the saved view: its name in the selector, its 2 val samples in the grid.
            selector = page.locator('[data-cy="saved-views-selection"]')
            assert selector.inner_text().replace("\u200b", "").strip() == "likely-mislabeled"
            page.wait_for_function(
                "() => document.querySelector('[data-cy=\"entry-counts\"]').innerText.trim() === '2 samples'",
                timeout=60_000,
            )
            page.keyboard.press("Escape")  # close a welcome pop-up that may cover the page
            page.screenshot(path="/tmp/cvtriage-review-app.png")
            # The server answers for the whole dataset and lists every saved view.
            answer = page.evaluate(
                """async (name) => {
                    const response = await fetch('/graphql', {method: 'POST',
                        headers: {'content-type': 'application/json'},
                        body: JSON.stringify({query: `{ dataset(name: "${name}") { estimatedSampleCount savedViews { name } } }`})});
                    return await response.json();
                }""",
                labelled_dataset.name,
            )
            found = answer["data"]["dataset"]
            assert found["estimatedSampleCount"] == len(labelled_dataset) == 6
            assert sorted(view["name"] for view in found["savedViews"]) == ["audit-class", "likely-mislabeled"]
            # Both saved views are offered in the view selector; choosing one shows its samples.
            selector.click()
            for view_name in ("likely-mislabeled", "audit-class"):
                page.locator(f'[data-cy="saved-views-{view_name}-selection-option"]').wait_for(timeout=30_000)
            page.locator('[data-cy="saved-views-audit-class-selection-option"]').click()
            page.wait_for_function(
                "() => document.querySelector('[data-cy=\"entry-counts\"]').innerText.trim() === '1 sample'",
                timeout=60_000,
            )
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=60) == 0
        assert "App stopped" in app_log.read_text()
    finally:
        if process.poll() is None:  # a failed assertion: still stop the App the clean way first
            stop_app(process)
    # Nothing the command started outlives it: FiftyOne's server and its wrapper are gone.
    gone, alive = psutil.wait_procs(spawned, timeout=30)
    assert alive == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _app_processes(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The App's server and its wrapper, not a database the command may have started (FiftyOne
    keeps that running for its other clients)."""
    return [process for process in processes if "--port" in process.cmdline()]


@pytest.mark.slow
def test_exported_labels_train_with_ultralytics(labelled_dataset, tmp_path):
    from ultralytics import YOLO

    out = tmp_path / "reviewed"
    export_reviewed_labels(labelled_dataset, out)
    model = YOLO("yolo11n.yaml")  # random init: offline, and only the data path is under test
    metrics = model.train(
        data=str(out / "data.yaml"), epochs=1, imgsz=64, batch=2, device="cpu", workers=0, plots=False,
        amp=False, verbose=False, project=str(tmp_path / "runs"), name="check", exist_ok=True,
    )  # fmt: skip
    assert model.names == dict(enumerate(CLASSES))
    # Ultralytics validated on the exported val split and read its class ids as written:
    # val_0 has a truck, val_1 a boat and a truck (car=0, person=1, boat=2, truck=3).
    assert metrics.nt_per_class.tolist() == [0, 0, 1, 2]


def test_the_users_own_plugins_stay_beside_the_review_plugin(tmp_path, monkeypatch, caplog):
    """`cvtriage app` points FiftyOne at one plugins folder: the user's own plugins are linked into it
    beside cvtriage's, and FiftyOne's own discovery finds both."""
    import fiftyone.plugins as fop
    import yaml

    from cvtriage.paths import REVIEW_PLUGIN_DIR
    from cvtriage.review.app import register_review_plugin

    ours = yaml.safe_load((REVIEW_PLUGIN_DIR / "fiftyone.yml").read_text())["name"]
    mine = tmp_path / "my-plugins"
    (mine / "hello").mkdir(parents=True)
    (mine / "hello" / "fiftyone.yml").write_text('name: "@me/hello"\ntype: plugin\n')
    monkeypatch.setenv("FIFTYONE_PLUGINS_DIR", str(mine))
    monkeypatch.setattr(fo.config, "plugins_dir", str(mine))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for _ in range(2):  # a second App start finds the links in place
        monkeypatch.setattr(fo.config, "plugins_dir", str(mine))
        register_review_plugin()
        names = {plugin.name for plugin in fop.list_plugins(enabled="all")}
        assert {ours, "@me/hello"} <= names
        assert fo.config.plugins_dir.startswith(str(tmp_path / "cache" / "cvtriage" / "plugins"))
    assert not any(caplog.records)

    # Where no link can be made (the cache folder inside the user's plugins folder: a loop), ours alone, said.
    monkeypatch.setenv("XDG_CACHE_HOME", str(mine / "cache"))
    monkeypatch.setattr(fo.config, "plugins_dir", str(mine))
    register_review_plugin()
    assert fo.config.plugins_dir == str(REVIEW_PLUGIN_DIR)
    assert {plugin.name for plugin in fop.list_plugins(enabled="all")} >= {ours}
    assert "not your plugins folder" in caplog.text and "lies inside it" in caplog.text

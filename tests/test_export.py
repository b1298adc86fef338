"""The scan's automatic OpenVINO export: made once, cached beside the weights, keyed by their hash,
rebuilt when they change or the cache is broken, never used for other weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from square_video import Square, write_square_video  # noqa: E402

from cvtriage.config import load_scan_config  # noqa: E402
from cvtriage.scan import export  # noqa: E402
from cvtriage.scan.export import (  # noqa: E402
    EXPORTS_DIR,
    MARKER,
    cached_export,
    is_complete,
    weights_digest,
)


@pytest.fixture(autouse=True)
def exports_on(monkeypatch, tmp_path):
    """Exports allowed (the suite turns them off), and the user cache inside this test's tmp."""
    monkeypatch.delenv(export.NO_EXPORT_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, random_init_weights) -> Path:
    """A folder holding a copy of the random weights as m.pt and their export, made once here."""
    folder = tmp_path_factory.mktemp("exported")
    weights = folder / "m.pt"
    shutil.copyfile(random_init_weights, weights)
    made = cached_export(weights)
    assert made.parent == folder / EXPORTS_DIR and is_complete(made, weights_digest(weights))
    return folder


@pytest.fixture
def weights(exported, tmp_path) -> Path:
    """This test's own copy of the weights and their cache."""
    shutil.copytree(exported, tmp_path / "w")
    return tmp_path / "w" / "m.pt"


@pytest.fixture
def no_new_exports(monkeypatch):
    def refuse(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(export, "_make_export", refuse)


def other_weights(path: Path) -> Path:
    """Other random weights of the same architecture, written to `path`."""
    from ultralytics import YOLO

    YOLO("yolo11n.yaml").save(str(path))
    return path


def test_cached_export_is_reused_not_made_again(weights, no_new_exports, engine_log):
    found = cached_export(weights)
    assert found.parent == weights.parent / EXPORTS_DIR
    assert found.name.startswith(f"m-{weights_digest(weights)[:12]}-") and found.name.endswith("_openvino_model")
    assert engine_log == [f"INFO: OpenVINO export of {weights} (cached in {found})"]


def test_changed_weights_get_a_new_export_and_never_the_old_one(weights, engine_log):
    old = cached_export(weights)
    other_weights(weights)  # the same file, now other weights
    engine_log.clear()
    new = cached_export(weights)
    assert engine_log == [f"INFO: OpenVINO export of {weights}: exporting once to {new} (--no-export: PyTorch)"]
    assert new != old and not old.exists()  # the stale export beside the weights is gone
    marker = json.loads((new / MARKER).read_text())
    assert marker["weights_sha256"] == weights_digest(weights)


def test_a_half_written_temporary_folder_is_ignored_and_a_broken_export_rebuilt(weights, engine_log):
    exports = weights.parent / EXPORTS_DIR
    final = next(exports.glob("*_openvino_model"))
    # A killed export leaves its temporary folder (never looked up), with a half export in it.
    leftover = exports / ".tmp-killed" / final.name
    leftover.mkdir(parents=True)
    (leftover / "m.xml").write_text("<half")
    assert cached_export(weights) == final
    # A cache folder whose files do not match its marker is not trusted: it is rebuilt.
    binary = next(final.glob("*.bin"))
    binary.write_bytes(binary.read_bytes()[:1000])
    assert not is_complete(final, weights_digest(weights))
    engine_log.clear()
    assert cached_export(weights) == final
    assert "exporting once" in engine_log[0] and is_complete(final, weights_digest(weights))
    assert not any(path.name.startswith(".tmp-") and path.name != ".tmp-killed" for path in exports.iterdir())


def test_an_unwritable_weights_folder_falls_back_to_the_user_cache(tmp_path, random_init_weights, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    weights = folder / "m.pt"
    shutil.copyfile(random_init_weights, weights)
    # Root writes anywhere: a file where the cache folder would go makes the folder unusable.
    (folder / EXPORTS_DIR).write_text("")
    made = cached_export(weights)
    assert made.parent == tmp_path / "user-cache" / "cvtriage" / "exports"
    assert is_complete(made, weights_digest(weights))
    monkeypatch.setattr(export, "_make_export", lambda *args: pytest.fail("exported again"))
    assert cached_export(weights) == made


def test_export_key_says_off_in_yaml_and_flags():
    assert load_scan_config(export=False).export == "off"  # YAML's unquoted `off`
    assert load_scan_config().export == "auto"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    squares = [Square(0, 0, 20, 10, 10, vx=3)]
    return write_square_video(tmp_path_factory.mktemp("clip") / "clip.mp4", squares, frames=20, width=320, height=180)


def test_cpu_scan_runs_the_export_at_the_pytorch_plan_and_no_export_runs_pytorch(
    weights, clip, tmp_path, no_new_exports, engine_log
):
    from cvtriage.scan.engine import FEATURES_AT_KEYFRAMES
    from cvtriage.scan.log import log_path, scan_is_finished
    from cvtriage.scan.pipeline import run_scan

    settings = load_scan_config(weights=str(weights), imgsz=160, device="cpu", dataset=None, out=str(tmp_path / "out"))
    exported = run_scan(clip, settings)
    assert exported.stats["export"] == str(next((weights.parent / EXPORTS_DIR).glob("*_openvino_model")))
    assert "OpenVINO export of" in engine_log[0]
    # No feature maps in an export: one line says so (these random weights find no event to take
    # keyframe features for: none).
    assert [line for line in engine_log if "Detect head" in line] == [f"INFO: {FEATURES_AT_KEYFRAMES}"]
    assert exported.features is None
    assert scan_is_finished(clip, settings)
    header = json.loads(log_path(settings, clip).read_text().splitlines()[0])

    plain = settings.model_copy(update={"export": "off"})
    assert not scan_is_finished(clip, plain)  # its results are the export's, not PyTorch's
    pytorch = run_scan(clip, plain)
    assert pytorch.stats["export"] is None
    assert json.loads(log_path(plain, clip).read_text().splitlines()[0])["fingerprint"] != header["fingerprint"]
    # The same frames at the same input: 320x180 at imgsz 160 goes in whole at 224 px, not tiled.
    for key in ("tiles", "imgsz", "frames_inferred"):
        assert exported.stats[key] == pytorch.stats[key], key
    assert (exported.stats["tiles"], exported.stats["imgsz"]) == ("off", 224)


def test_cpu_watch_runs_the_export_and_export_off_runs_pytorch(weights, tmp_path, no_new_exports, engine_log):
    import cv2

    from cvtriage.config import load_ingest_config
    from cvtriage.ingest.pairs import PairProcessor
    from cvtriage.ingest.watch import watch_folder

    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((96, 160, 3), 90, np.uint8))
    (folder / "a.json").write_text(json.dumps({"lat": 45.5, "lon": 7.25, "image": "a.jpg"}))
    scan = load_scan_config(weights=str(weights), imgsz=160, device="cpu")
    ingest = load_ingest_config(out=str(tmp_path / "out"), dataset=None)
    (tmp_path / "out").mkdir()
    export_folder = next((weights.parent / EXPORTS_DIR).glob("*_openvino_model"))

    exported = PairProcessor(folder, tmp_path / "out", scan, ingest)
    assert Path(exported.model.ckpt_path) == export_folder
    assert "OpenVINO export of" in engine_log[0]
    engine_log.clear()
    plain = PairProcessor(folder, tmp_path / "out", scan.model_copy(update={"export": "off"}), ingest)
    assert Path(plain.model.ckpt_path) == weights and not engine_log

    summary = watch_folder(folder, scan, ingest, once=True)
    assert summary.processed == 1


def test_the_shipped_demo_model_is_exported_to_the_user_cache_not_into_the_package(monkeypatch, tmp_path):
    """A wheel install's package folder is no cache: `pip uninstall` would leave the export behind."""
    from cvtriage.paths import DEMO_WEIGHTS, PACKAGE_DIR

    made = []

    def record(weights, digest, scratch, final):
        made.append(final)
        final.mkdir(parents=True)
        return final

    monkeypatch.setattr(export, "_make_export", record)
    assert cached_export(DEMO_WEIGHTS).parent == tmp_path / "user-cache" / "cvtriage" / "exports"
    assert made and not made[0].resolve().is_relative_to(PACKAGE_DIR)
    assert not (DEMO_WEIGHTS.parent / EXPORTS_DIR).exists()

"""Settings: refused in one line when they would fail late; the shipped YAML and the models agree
on every default; a checkout's pre-0.2 files are still read; `demo` names the shipped model."""

import json
from pathlib import Path

import pytest
import yaml
from square_video import Square, write_square_video
from typer.testing import CliRunner

import cvtriage.config as config
from cvtriage.cli import app
from cvtriage.config import (
    OLD_NAMES,
    AuditConfig,
    BatchConfig,
    HarvestConfig,
    IngestConfig,
    ScanConfig,
    TrainConfig,
    load_audit_config,
    load_scan_config,
    load_settings,
    load_train_config,
)
from cvtriage.config.settings import StrictModel
from cvtriage.errors import CvtriageError
from cvtriage.paths import CONFIG_DIR, DEMO_WEIGHTS, PACKAGE_DIR

ROOT = PACKAGE_DIR.parent
runner = CliRunner()


@pytest.mark.parametrize("tile", ["0x9", "3x0"])
def test_a_tile_grid_needs_a_row_and_a_column(tile):
    with pytest.raises(CvtriageError, match=f"tile: {tile}: rows and columns must be at least 1"):
        load_scan_config(tile=tile)
    assert load_scan_config(tile="1x1").tile == "1x1"


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "results.txt").write_text("mine")
    with pytest.raises(CvtriageError, match="out: .*results.txt is a file, not a folder"):
        load_scan_config(out=str(tmp_path / "results.txt"))
    assert load_scan_config(out=str(tmp_path / "new")).out == str(tmp_path / "new")


# --- the shipped defaults: written twice, in the YAML files and in the pydantic models ----------

DEFAULT_FILES = {
    ScanConfig: "scan.yaml", TrainConfig: "train.yaml", AuditConfig: "audit.yaml",
    BatchConfig: "batch.yaml", HarvestConfig: "harvest.yaml", IngestConfig: "watch.yaml",
}  # fmt: skip


def test_every_shipped_file_has_its_settings_model():
    assert sorted(path.name for path in CONFIG_DIR.glob("*.yaml")) == sorted(DEFAULT_FILES.values())


def is_section(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, StrictModel)


def differences(model: type[StrictModel], data: dict, where: str) -> list[str]:
    """Keys in one place and not the other, and values that differ, down nested sections. A YAML
    value is compared as validated ("10m" is 600 seconds)."""
    fields = model.model_fields
    found = [f"{where}{key}: not a field of {model.__name__}" for key in data.keys() - fields.keys()]
    found += [f"{where}{key}: missing from the YAML" for key in fields.keys() - data.keys()]
    sections = {key for key, field in fields.items() if is_section(field.annotation)}
    shared = data.keys() & fields.keys()
    validated = model.model_validate({key: data[key] for key in shared - sections})
    for key in shared:
        default = fields[key].get_default(call_default_factory=True)
        if key in sections:
            found += differences(fields[key].annotation, data[key], f"{where}{key}.")
        elif not fields[key].is_required() and getattr(validated, key) != default:
            found.append(f"{where}{key}: YAML {getattr(validated, key)!r}, model {default!r}")
    return found


@pytest.mark.parametrize("model", DEFAULT_FILES, ids=DEFAULT_FILES.values())
def test_the_yaml_defaults_and_the_model_defaults_agree(model):
    data = yaml.safe_load((CONFIG_DIR / DEFAULT_FILES[model]).read_text())
    assert differences(model, data, "") == []


# --- the pre-0.2 files in a checkout's configs/ folder, read for one release ---------------------


@pytest.fixture
def old_configs(tmp_path, monkeypatch) -> Path:
    """A checkout's configs/ folder of its own, no warnings given yet in this process."""
    folder = tmp_path / "configs"
    folder.mkdir()
    monkeypatch.setattr(config, "OLD_CONFIG_DIR", folder)
    monkeypatch.setattr(config, "_warned", set())
    return folder


# A setting of each file, at a value other than its default.
CHANGED = {
    ScanConfig: ("conf", 0.4), TrainConfig: ("epochs", 7), AuditConfig: ("top", 7),
    BatchConfig: ("max_retries", 7), HarvestConfig: ("jpeg_quality", 70), IngestConfig: ("batch_pairs", 7),
}  # fmt: skip


@pytest.mark.parametrize("model", DEFAULT_FILES, ids=[OLD_NAMES[name] for name in DEFAULT_FILES.values()])
def test_an_old_file_is_still_read_over_the_shipped_defaults(old_configs, model):
    key, value = CHANGED[model]
    (old_configs / OLD_NAMES[DEFAULT_FILES[model]]).write_text(f"{key}: {value}\n")
    assert getattr(load_settings(model, DEFAULT_FILES[model]), key) == value


def test_your_config_file_and_the_flags_win_over_an_old_file(old_configs, tmp_path):
    (old_configs / "default.yaml").write_text("conf: 0.4\nimgsz: 320\n")
    mine = tmp_path / "mine.yaml"
    mine.write_text("conf: 0.5\n")
    assert (load_scan_config().conf, load_scan_config().imgsz) == (0.4, 320)
    assert (load_scan_config(mine).conf, load_scan_config(mine).imgsz) == (0.5, 320)
    assert load_scan_config(mine, conf=0.6).conf == 0.6


def test_an_old_file_gets_one_warning_line(old_configs, tmp_path):
    (old_configs / "default.yaml").write_text("conf: 0.4\n")
    missing = tmp_path / "missing.mp4"
    first, second = (runner.invoke(app, ["scan", str(missing), "--no-dataset"]) for _ in range(2))
    warning = f"cvtriage: warning: {old_configs / 'default.yaml'} is read for this release only: "
    lines = first.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(warning), first.output
    assert lines[0].endswith("keep your changes in a file of your own and pass it with --config")
    assert lines[1].startswith("cvtriage: error: ") and "missing.mp4" in lines[1]
    # Once per process: a scan of many videos reads harvest.yaml for each.
    assert "warning" not in second.output and second.exit_code == first.exit_code != 0


# --- configs/: examples of a file of your own -------------------------------------------------------


@pytest.mark.parametrize("example", ["scan-gpu.yaml", "scan-team.yaml"])
def test_the_example_override_files_load(example):
    path = ROOT / "configs" / example
    assert example not in OLD_NAMES.values()  # a checkout would read it as a pre-0.2 file
    given = yaml.safe_load(path.read_text())
    settings = load_scan_config(path)
    assert {key: getattr(settings, key) for key in given} == given
    # Every other key keeps its default.
    defaults = load_scan_config()
    unchanged = set(ScanConfig.model_fields) - set(given)
    assert {key: getattr(settings, key) for key in unchanged} == {key: getattr(defaults, key) for key in unchanged}


# --- the demo model by name --------------------------------------------------------------------------


@pytest.mark.parametrize("load", [load_scan_config, load_train_config, load_audit_config])
def test_weights_demo_is_the_shipped_model(load, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("weights: demo\n")
    assert load(weights="demo").weights == load(mine).weights == str(DEMO_WEIGHTS)
    assert DEMO_WEIGHTS.is_absolute() and DEMO_WEIGHTS.is_file()


def test_a_scan_with_weights_demo_records_the_real_file(tmp_path):
    video = write_square_video(tmp_path / "squares.mp4", [Square(0, 0, 29, 40, 40)], frames=30)
    out = tmp_path / "runs"
    result = runner.invoke(app, ["scan", str(video), "--weights", "demo", "--no-dataset", "--out", str(out)])
    assert result.exit_code == 0, result.output
    events = json.loads((out / "squares" / "events.json").read_text())
    assert events["settings"]["weights"] == str(DEMO_WEIGHTS)


def test_offline_a_missing_hub_model_suggests_the_demo_model(tmp_path):
    video = write_square_video(tmp_path / "squares.mp4", [], frames=5)
    result = runner.invoke(app, ["scan", str(video), "--weights", "yolo11x.pt", "--no-dataset"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().endswith("or the demo model shipped with cvtriage: --weights demo"), result.output

"""A wheel built from this tree works on its own: the settings and the demo model ship inside it
and are found from the installed package, with no source checkout anywhere near.

Offline, as CI is: the wheel is built with this environment's setuptools (no isolated build
environment to download), and the fresh environment installs only the wheel; it borrows this
environment's dependencies through a .pth file, not this environment's cvtriage.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from cvtriage.paths import CONFIG_DIR, DEMO_WEIGHTS, PACKAGE_DIR

ROOT = PACKAGE_DIR.parent
# Fire extinguishers, the demo model's best class; both objects are in view all along (seed 2).
FLYOVER = ["--seconds", "4", "--seed", "2", "--objects", "2", "--classes", "fire extinguisher"]


# The source tree stays off the path (a developer's PYTHONPATH names it).
ENVIRON = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def run(*args, cwd: Path | None = None) -> str:
    done = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=300, cwd=cwd, env=ENVIRON)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the tree: a build in place would leave build/ in the checkout, and a
    stale build/lib would put modules deleted since into the next wheel."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    caches = shutil.ignore_patterns("__pycache__", ".cvtriage-exports")
    shutil.copytree(PACKAGE_DIR, source / "cvtriage", ignore=caches)
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source)
    (built,) = dist.glob("cvtriage-*.whl")
    return built


def test_the_wheel_holds_the_settings_the_demo_model_and_the_review_plugin(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"cvtriage/config/{path.name}" for path in CONFIG_DIR.glob("*.yaml")}
    assert shipped and shipped <= names
    assert f"cvtriage/weights/{DEMO_WEIGHTS.name}" in names
    # The App's review plugin: `cvtriage app` points FiftyOne at this folder of the installed package.
    assert {f"cvtriage/review/plugin/{name}" for name in ("fiftyone.yml", "__init__.py", "keys.js")} <= names


def install(wheel: Path, where: Path) -> dict[str, Path]:
    """A new virtual environment holding the wheel, with this environment's dependencies."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(where)
    scheme = {"base": where, "platbase": where}
    paths = {key: Path(sysconfig.get_path(key, vars=scheme)) for key in ("purelib", "scripts")}
    python = paths["scripts"] / Path(sys.executable).name
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel)
    # Plain path lines add these folders without running the .pth files in them, so this
    # environment's editable cvtriage (an import hook installed by such a file) stays out.
    (paths["purelib"] / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return {"python": python, **paths}


@pytest.mark.slow
def test_the_installed_wheel_makes_a_flyover_and_scans_it_with_the_demo_model(wheel, tmp_path):
    env = install(wheel, tmp_path / "venv")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run(env["python"], "-c", "import cvtriage.paths as p; print(p.__file__); print(p.OLD_CONFIG_DIR)", cwd=work)
    module, old_configs = where.splitlines()
    assert Path(module) == env["purelib"] / "cvtriage" / "paths.py" and old_configs == "None"

    cvtriage = env["scripts"] / "cvtriage"
    run(cvtriage, "synth", "video", "flyover.mp4", *FLYOVER, cwd=work)
    run(cvtriage, "scan", "flyover.mp4", "--weights", "demo", "--no-dataset", cwd=work)

    results = json.loads((work / "runs" / "scan" / "flyover" / "events.json").read_text())
    assert results["settings"]["weights"] == str(env["purelib"] / "cvtriage" / "weights" / DEMO_WEIGHTS.name)
    truth = json.loads((work / "flyover.truth.json").read_text())["objects"]
    events = [event for event in results["events"] if event["class"] == "fire extinguisher"]
    for thing in truth:
        overlap = [span_iou(thing, event) for event in events]
        # Measured with the demo model: both found over exactly their frames (span IoU 1.0).
        assert max(overlap, default=0) >= 0.9, (thing["first_frame"], thing["last_frame"], results["events"])


def span_iou(a: dict, b: dict) -> float:
    inter = min(a["last_frame"], b["last_frame"]) - max(a["first_frame"], b["first_frame"]) + 1
    union = max(a["last_frame"], b["last_frame"]) - min(a["first_frame"], b["first_frame"]) + 1
    return max(inter, 0) / union

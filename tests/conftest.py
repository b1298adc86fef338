"""Test-session environment: offline, CPU, a private FiftyOne database, Ultralytics' font in place.

The environment is set before any test module imports fiftyone or ultralytics, because both
read it at import time.
"""

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# pytest-xdist's workers (`pytest -n 2`) share the folder their controller made, so they share one
# mongod (one database folder), and only the controller removes it, after every worker has ended.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and os.environ.get("CVTRIAGE_TEST_SESSION_DIR"):
    _SESSION_DIR = Path(os.environ["CVTRIAGE_TEST_SESSION_DIR"])
else:
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="cvtriage-tests-"))
    os.environ["CVTRIAGE_TEST_SESSION_DIR"] = str(_SESSION_DIR)
    # Registered before fiftyone is imported, so it runs after FiftyOne has stopped its database.
    atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
os.environ["FIFTYONE_DATABASE_DIR"] = str(_SESSION_DIR / "fiftyone-db")
# FiftyOne attaches to any mongod it already runs for this OS user, whatever the database dir
# (an open App, another test session, another worker): a database name of our own keeps tests out
# of its data.
os.environ["FIFTYONE_DATABASE_NAME"] = f"{_SESSION_DIR.name}-{_WORKER}" if _WORKER else _SESSION_DIR.name
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(_SESSION_DIR / "fiftyone-media")
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_CONFIG_DIR"] = str(_SESSION_DIR / "yolo-config")
os.environ["MPLBACKEND"] = "Agg"
# Scans run PyTorch, as before: OpenVINO exports are made only by the export's own tests, in
# their tmp folders, never beside the project's weights (see cvtriage.scan.export).
os.environ["CVTRIAGE_NO_EXPORT"] = "1"

_font_dir = _SESSION_DIR / "yolo-config" / "Ultralytics"
if not (_font_dir / "Arial.ttf").exists():  # made once, by the controller when workers share the folder
    _font_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf", _font_dir / "Arial.ttf")
# Ultralytics writes its settings file (and says so) on first import: let that happen here, not
# inside the output of whichever CLI test happens to run first.
import ultralytics.utils  # noqa: E402, F401

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
# The benchmarks' yardstick (benchmarks/scoring.py: match_spans) checks scans against known answers here too.
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real footage and COCO weights); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_runtime():
    """One local Ray runtime with 2 CPUs for the whole session (it takes seconds to start). Its
    workers inherit this environment, with the tests folder importable (square_video)."""
    import ray

    tests = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    # Drivers started in a subprocess join this runtime, not another worker's (`address="auto"`
    # picks the machine's latest Ray cluster).
    os.environ["RAY_ADDRESS"] = context.address_info["gcs_address"]
    yield ray
    del os.environ["RAY_ADDRESS"]
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def one_mongod_for_the_workers():
    """pytest-xdist's workers start at the same moment and share one mongod: their first connection
    goes through cvtriage's start lock, as the commands' does, or both start one and the second
    waits 60 s for a port and fails (cvtriage.database)."""
    if _WORKER:
        from cvtriage.database import connect_database

        connect_database()


def pytest_sessionfinish(session, exitstatus):
    # The mongod may be shared (see FIFTYONE_DATABASE_NAME above): drop only this session's database.
    if "fiftyone" in sys.modules:
        from fiftyone.core.odm.database import drop_database

        drop_database()


@pytest.fixture(scope="session")
def random_init_weights(tmp_path_factory):
    """A random-init yolo11n that names yolo_factory's classes (plumbing only: it detects nothing)."""
    from ultralytics import YOLO
    from yolo_factory import NAMES

    model = YOLO("yolo11n.yaml")
    model.model.names = dict(enumerate(NAMES))
    path = tmp_path_factory.mktemp("weights") / "random-yolo11n.pt"
    model.save(str(path))
    return path


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


@pytest.fixture
def engine_log():
    """What cvtriage's engine logs (notes and warnings) while the test runs, one "LEVEL: message"
    string each. Caught on the `cvtriage` logger itself: once a CLI test has installed its printer
    there, records no longer reach the root logger that caplog watches."""
    logger, handler = logging.getLogger("cvtriage"), _Lines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

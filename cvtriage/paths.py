"""Where cvtriage's own files are: those that ship inside the package, found from it (a wheel
install has no source tree), what it makes once and keeps in the user's cache folder, and a
source checkout's pre-0.2 settings."""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "config"
# The demo detector this project fine-tuned on its own synthetic data (its card: weights/README.md in
# the source tree). `--weights demo` and `weights: demo` name it.
DEMO_WEIGHTS = PACKAGE_DIR / "weights" / "cvtriage-everyday-yolov8n.pt"
DEMO_WEIGHTS_NAME = "demo"
# The review plugin for the FiftyOne App (decide with a key), which `cvtriage app` registers.
REVIEW_PLUGIN_DIR = PACKAGE_DIR / "review" / "plugin"
# Until 0.2 the defaults were edited in the source checkout's configs/ folder, beside the package:
# a checkout's copies there are still read for one release (cvtriage.config). None outside a
# checkout (a wheel install sits in site-packages, where a configs/ folder is someone else's).
_CHECKOUT = PACKAGE_DIR.parent
OLD_CONFIG_DIR = _CHECKOUT / "configs" if (_CHECKOUT / "pyproject.toml").is_file() else None


def user_cache_dir() -> Path:
    """cvtriage's folder in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache): what is made
    once and kept (OpenVINO exports of read-only weights, the App's plugins folder)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cvtriage"

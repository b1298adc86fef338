"""Where the project's own files live, whatever the working directory."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "configs"
WEIGHTS_DIR = PROJECT_ROOT / "weights"
# The demo detector this project trains on its own synthetic data (see weights/README.md).
DEMO_WEIGHTS = WEIGHTS_DIR / "cvtriage-synth-yolo11n.pt"

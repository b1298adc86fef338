"""cvtriage: triage drone footage with YOLO and FiftyOne."""

import os

__version__ = "0.2.0"

# Importing Ultralytics sets OMP_NUM_THREADS=1 when it is unset; keep what the user or a scheduler
# (a Ray task with num_cpus=N) set before that, so inference and training can use every core given.
OMP_NUM_THREADS_AT_START = os.environ.get("OMP_NUM_THREADS")

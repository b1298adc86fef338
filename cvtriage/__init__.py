"""cvtriage: triage drone footage with YOLO and FiftyOne."""

__version__ = "0.1.0"

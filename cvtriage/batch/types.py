"""The batch's types: how a worker gets its model, and what became of each video."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cvtriage.scan.engine import ScanResult

# scanned: now, from the start; resumed: now, continuing an interrupted scan's detection log;
# finished earlier: a previous run left complete results, skipped; failed: scanned but could
# not be (the reason says why); missing: named in a list file but not there.
Status = Literal["scanned", "resumed", "finished earlier", "failed", "missing"]
FAILED: tuple[Status, ...] = ("failed", "missing")


@dataclass(frozen=True)
class ModelRecipe:
    """How a process gets the model: Ultralytics loads `weights`, or `factory()` builds it.

    Picklable and hashable (a factory is a class or a module-level function), so a Ray worker
    can be sent it and keep the model it built for the next video.
    """

    weights: str
    factory: Callable[[], Any] | None = None

    def load(self):
        from cvtriage.models import load_model

        return self.factory() if self.factory is not None else load_model(self.weights)


@dataclass
class VideoOutcome:
    source: Path
    status: Status
    reason: str = ""  # one line, for failed and missing
    events: int | None = None
    frames_inferred: int | None = None
    frames_total: int | None = None
    wall_time_s: float | None = None  # of this run's scan (for "finished earlier", the scan that made them)
    out_dir: Path | None = None
    # The scan itself (its keyframes are in out_dir), for the driver's part (pipeline.finish_scan).
    scan: ScanResult | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass
class BatchReport:
    outcomes: list[VideoOutcome]
    wall_time_s: float
    runner: str  # "this process" or the Ray cluster's description
    batch_json: Path

    @property
    def failed(self) -> list[VideoOutcome]:
        return [outcome for outcome in self.outcomes if outcome.failed]

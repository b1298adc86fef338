"""One video as a batch's worker scans it, in this process or in a Ray task: the pipeline's steps
that only write files (cvtriage.scan.pipeline.scan_to_results_folder). Storing its events and
marking its log complete are the driver's (cvtriage.batch.runner)."""

from __future__ import annotations

from pathlib import Path

from cvtriage.batch.types import VideoOutcome
from cvtriage.config import ScanConfig
from cvtriage.errors import CvtriageError
from cvtriage.scan.pipeline import scan_to_results_folder


def scan_video(source: Path, settings: ScanConfig, model) -> VideoOutcome:
    """The video's events and results folder; any failure becomes the outcome's one-line reason."""
    try:
        result = scan_to_results_folder(source, settings, model)
    except CvtriageError as error:
        if error.exit_code == 130:  # Ctrl-C stops the batch, not just this video
            raise
        return VideoOutcome(source, "failed", str(error))
    except Exception as error:  # an unexpected failure (a decoder crash, a full disk) stays this video's
        text = str(error).strip()
        return VideoOutcome(source, "failed", f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}")
    stats = result.stats
    return VideoOutcome(
        source, "resumed" if stats["frames_resumed"] else "scanned", events=len(result.events),
        frames_inferred=stats["frames_inferred"], frames_total=stats["frames_total"], wall_time_s=stats["wall_time_s"],
        out_dir=result.out_dir, scan=result,
    )  # fmt: skip

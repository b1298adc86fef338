"""Ray, at the edge: join or start a runtime, and run one task per video on it.

One task per video, not per frame: tracking needs a video's frames in order, and a whole video
keeps decoding, coarse-to-fine and tracking in one process. Each worker process keeps the model
it built for the next video it gets (`_worker_model`), so imports and model loading are paid
once per worker. A worker that dies mid-video (killed, out of memory, node lost) has its task
run again by Ray (`max_retries`); the retry resumes from the video's detection log in `--out`,
which is why `--out` must be a folder every node sees at the same path. Tasks only write files;
their results come back to the driver, the one FiftyOne writer.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from cvtriage.batch.types import ModelRecipe, VideoOutcome
from cvtriage.batch.worker import scan_video
from cvtriage.config import BatchConfig, ScanConfig
from cvtriage.errors import CvtriageError

# A quarter of a GPU per video (batch.yaml's gpus_per_video: auto), so four videos share each GPU.
# A GPU scan's pace is its video's decoding, on the CPU, not the model's: the one scan measured on
# a GPU (an H200, the refine strategy) kept it busy 11% of the time, and a dense scan asks the
# model for no more frames than one decoder yields. Four videos decode on four sets of cores and
# take turns on the GPU; each one's model and batch (YOLOv8n, 32 1080p frames in half precision:
# a few hundred MB) fit four times over in any GPU. The gain is measured by gpu_check.py.
GPU_SHARE_PER_VIDEO = 0.25


def connect(address: str, settings: BatchConfig) -> bool:
    """Join the Ray cluster at `address`, or for "auto" run `ray.init()` (which joins the cluster
    of a Ray job, RAY_ADDRESS, or else starts a local runtime with this machine's cores).
    Returns whether this call started the connection (and so should end it)."""
    import ray

    if address != "auto":
        _check_listening(address, settings.connect_timeout_s)
    if ray.is_initialized():  # a caller's own ray.init() (a script, a test session): use it
        return False
    try:
        ray.init(
            address=None if address == "auto" else address,
            include_dashboard=False,
            log_to_driver=False,  # workers' logs stay in Ray's session folder; each video's outcome says what failed
            logging_level=logging.ERROR,  # not its banner and notices: the batch prints its own summary
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CvtriageError(f"--ray {address}: cannot join the Ray cluster ({reason})") from None
    return True


def _check_listening(address: str, timeout_s: float) -> None:
    """Fail in seconds where Ray would retry for a minute or more when nothing listens there."""
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise CvtriageError(f"--ray {address}: expected auto, ray://HOST:PORT (Ray Client) or HOST:PORT (the head's GCS)")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise CvtriageError(f"--ray {address}: nothing answers at {host}:{port} ({reason}); is the Ray head running?") from None


def disconnect() -> None:
    import ray

    ray.shutdown()


def describe_cluster() -> str:
    import ray

    resources = ray.cluster_resources()
    gpus = f", {resources['GPU']:g} GPUs" if resources.get("GPU") else ""
    nodes = len([node for node in ray.nodes() if node.get("Alive")])
    return f"Ray, {nodes} node{'s' if nodes != 1 else ''}: {resources.get('CPU', 0):g} CPUs{gpus}"


@functools.lru_cache(maxsize=1)
def _worker_model(recipe: ModelRecipe):
    return recipe.load()


def _scan_task(source: str, settings: ScanConfig, recipe: ModelRecipe) -> VideoOutcome:
    try:
        model = _worker_model(recipe)
    except CvtriageError as error:  # unusable weights: every video says so
        return VideoOutcome(Path(source), "failed", str(error))
    return scan_video(Path(source), settings, model)


def gpus_per_video(setting: float | str, cluster_gpus: float, device: str) -> float:
    """The GPUs each video's task asks for: the setting, or for auto GPU_SHARE_PER_VIDEO when the
    cluster has GPUs and the scan may use one (--device is not cpu), else none."""
    if setting != "auto":
        return float(setting)
    return GPU_SHARE_PER_VIDEO if cluster_gpus > 0 and str(device).strip().lower() != "cpu" else 0.0


def scan_videos(
    sources: list[Path], settings: ScanConfig, recipe: ModelRecipe, batch: BatchConfig
) -> Iterator[VideoOutcome]:
    """Submit one task per source; yield each outcome as its task finishes."""
    import ray
    from ray.exceptions import RayError

    gpus = gpus_per_video(batch.gpus_per_video, ray.cluster_resources().get("GPU", 0), settings.device)
    # max_calls=0: workers are reused across videos even with GPUs (Ray's default for GPU tasks
    # is one call per worker), so each keeps its loaded model.
    task = ray.remote(max_calls=0)(_scan_task).options(
        num_cpus=batch.cpus_per_video, num_gpus=gpus, max_retries=batch.max_retries
    )
    pending = {task.remote(str(source), settings, recipe): source for source in sources}
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        source = pending.pop(done)
        try:
            yield ray.get(done)
        except RayError as error:  # the task's worker died more often than max_retries allows
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            yield VideoOutcome(source, "failed", f"{type(error).__name__} on Ray: {reason}")

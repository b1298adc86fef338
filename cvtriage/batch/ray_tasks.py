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
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cvtriage.batch.types import ModelRecipe, VideoOutcome
from cvtriage.batch.worker import scan_video
from cvtriage.config import BatchConfig, ScanConfig
from cvtriage.errors import CvtriageError, first_line

# A quarter of a GPU per video (batch.yaml's gpus_per_video: auto), so four videos share each GPU.
# A GPU scan's pace is its video's decoding, on the CPU, not the model's: the one scan measured on
# a GPU (an H200, the refine strategy) kept it busy 11% of the time, and a dense scan asks the
# model for no more frames than one decoder yields. Four videos decode on four sets of cores and
# take turns on the GPU; each one's model and batch (YOLOv8n, 32 1080p frames in half precision:
# a few hundred MB) fit four times over in any GPU. The gain is measured by gpu_check.py.
GPU_SHARE_PER_VIDEO = 0.25


@dataclass(frozen=True)
class Connection:
    ended_here: bool  # this call connected, so the batch disconnects when it ends
    local: bool  # a runtime this call started on this machine: no node joins it later


def connect(address: str, settings: BatchConfig) -> Connection:
    """Join the Ray cluster at `address`, or for "auto" run `ray.init()` (which joins the cluster
    of a Ray job, RAY_ADDRESS, or the one `ray start` last started here, or else starts a local
    runtime with this machine's cores)."""
    import ray

    if address != "auto":
        _check_listening(address, settings.connect_timeout_s)
    if ray.is_initialized():  # a caller's own ray.init() (a script, a test session): use it
        return Connection(ended_here=False, local=False)
    try:
        ray.init(
            address=None if address == "auto" else address,
            include_dashboard=False,
            log_to_driver=False,  # workers' logs stay in Ray's session folder; each video's outcome says what failed
            logging_level=logging.ERROR,  # not its banner and notices: the batch prints its own summary
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = first_line(error)
        raise CvtriageError(f"--ray {address}: cannot join the Ray cluster ({reason})") from None
    # Whether ray.init() started the head node itself: Ray says so only on its private node object
    # (a Ray without it reads as a cluster joined: a warning where an error was due, nothing worse).
    node = getattr(sys.modules.get("ray._private.worker"), "_global_node", None)
    return Connection(ended_here=True, local=bool(getattr(node, "head", False)))


def unfit_request(cpus: float, gpus: float, nodes: list[dict]) -> str | None:
    """Why no alive node of `ray.nodes()` can run one video's task, or None when one can."""
    totals = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    if any(res.get("CPU", 0) >= cpus and res.get("GPU", 0) >= gpus for res in totals):
        return None
    largest = max(totals, key=lambda res: (res.get("GPU", 0), res.get("CPU", 0)), default={})
    asked = _count(cpus, "CPU") + (f" and {_count(gpus, 'GPU')}" if gpus else "")
    return (f"each video asks Ray for {asked}, and no node has that many "
            f"(the largest: {_count(largest.get('CPU', 0), 'CPU')}, {_count(largest.get('GPU', 0), 'GPU')})")  # fmt: skip


def _count(amount: float, unit: str) -> str:
    return f"{amount:g} {unit}{'' if amount == 1 else 's'}"


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
    sources: list[Path], settings: ScanConfig, recipe: ModelRecipe, batch: BatchConfig, local: bool
) -> Iterator[VideoOutcome]:
    """Submit one task per source, now; the outcomes come as the tasks finish. A task no node can
    run waits for one that can: on a runtime started here (`local`) none ever joins, so that fails
    at once in one line; a cluster may gain one (an autoscaler's), so a warning says why nothing
    moves."""
    import ray

    gpus = gpus_per_video(batch.gpus_per_video, ray.cluster_resources().get("GPU", 0), settings.device)
    unfit = unfit_request(batch.cpus_per_video, gpus, ray.nodes()) if sources else None
    if unfit and local:
        raise CvtriageError(f"--batch-config: {unfit} on the Ray runtime started here: lower cpus_per_video or gpus_per_video")
    if unfit:
        logging.getLogger(__name__).warning(f"--batch-config: {unfit}: the videos wait until a node that has them joins the cluster")
    # max_calls=0: workers are reused across videos even with GPUs (Ray's default for GPU tasks
    # is one call per worker), so each keeps its loaded model.
    task = ray.remote(max_calls=0)(_scan_task).options(
        num_cpus=batch.cpus_per_video, num_gpus=gpus, max_retries=batch.max_retries
    )
    return _outcomes({task.remote(str(source), settings, recipe): source for source in sources})


def _outcomes(pending: dict) -> Iterator[VideoOutcome]:
    """Each submitted task's outcome, as it finishes."""
    import ray
    from ray.exceptions import RayError

    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        source = pending.pop(done)
        try:
            yield ray.get(done)
        except RayError as error:  # the task's worker died more often than max_retries allows
            reason = first_line(error)
            yield VideoOutcome(source, "failed", f"{type(error).__name__} on Ray: {reason}")

"""The dense strategy: every frame (or every k-th) through the model in large batches, for GPUs.

The refine strategy samples a few frames a second and probes the frames around each change, one
small model call at a time: right on a CPU, where every model call is dear. On a GPU a model call
is cheap and those sequential probes are what cost, so a dense scan infers every k-th frame in
batches (frames decoded ahead on threads, letterboxed on the device: backends/torch_batched.py)
and tracks every one of them; events need no refinement, and the scan runs at the pace of
decoding. `strategy: auto` is dense on CUDA and refine elsewhere.

k (`dense_step: auto`) is measured once, at the start: the smallest k at which the model keeps up
with decoding. It is kept in the scan's detection log, so a resumed scan infers the same frames.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from cvtriage import OMP_NUM_THREADS_AT_START
from cvtriage.scan.detector import Detector
from cvtriage.scan.frames import FrameSource, PrefetchedFrames
from cvtriage.types import VideoInfo

# Frames per model call in a dense scan on CUDA with `batch: auto`: large enough that one call's
# fixed costs (launches, NMS set-up, the copy back) are shared by many frames, small enough that a
# batch of 1080p frames (32 x 6 MB of pinned staging memory) arrives from the decoder in a few
# hundredths of a second. Not tuned on a GPU (none was at hand): benchmarks/gpu_check.py measures.
DENSE_GPU_BATCH = 32
# Decoded frames measured for dense_step: auto, at least (and at least one batch).
CALIBRATION_FRAMES = 32
# Conversion threads beside the decoder thread at most (see conversion_threads).
MAX_CONVERTERS = 4


def scan_strategy(strategy: str, device: str) -> str:
    """What `strategy` means on this device: auto is dense on CUDA, refine on the CPU and MPS."""
    if strategy != "auto":
        return strategy
    return "refine" if device in ("cpu", "mps") else "dense"


def conversion_threads() -> int:
    """Threads that convert decoded frames to BGR images beside the decoder thread in a dense scan
    (frames.PrefetchedFrames): half the cores (or the share a scheduler gave this process) past
    two, which FFmpeg's own decoding threads and the model's thread keep busy; at most
    MAX_CONVERTERS. None on a 2-core machine, where both cores already decode."""
    cores = int(OMP_NUM_THREADS_AT_START or os.cpu_count() or 1)
    return min(MAX_CONVERTERS, max(0, (cores - 2) // 2))


@dataclass(frozen=True)
class DenseRates:
    """What dense_step: auto measured: decoding and the model, in frames per second."""

    decode_fps: float
    model_fps: float

    @property
    def step(self) -> int:
        """The smallest k at which the model keeps up with decoding: every k-th frame inferred,
        the model takes no longer per decoded frame than decoding does."""
        return max(1, math.ceil(self.decode_fps / self.model_fps - 1e-9))


def measure_rates(video: VideoInfo, detector: Detector, batch_size: int) -> DenseRates:
    """Decoding (as the dense scan decodes: frames.PrefetchedFrames with its conversion threads)
    over the first max(CALIBRATION_FRAMES, batch_size) frames, then the model on one batch of
    them, timed after a first, untimed batch (CUDA's start-up: kernels chosen, memory reserved).
    The detector's pixel count is left as it was."""
    wanted = max(CALIBRATION_FRAMES, batch_size)
    started = time.perf_counter()
    images = []
    prefetch = PrefetchedFrames(FrameSource(video), lambda i: i < wanted, wanted, conversion_threads())
    try:
        for index, image in prefetch:
            if image is not None:
                images.append((index, video.time_of(index), image))
            if index >= wanted - 1:
                break  # the rest of the video is not decoded
    finally:
        prefetch.close()
    decode_s = time.perf_counter() - started
    if not images:  # nothing decodes: the scan itself says so
        return DenseRates(1.0, 1.0)
    batch = images[:batch_size]
    pixels = detector.pixels_inferred
    detector.detect(batch)
    started = time.perf_counter()
    detector.detect(batch)
    model_s = time.perf_counter() - started
    detector.pixels_inferred = pixels
    return DenseRates(len(images) / max(decode_s, 1e-6), len(batch) / max(model_s, 1e-6))

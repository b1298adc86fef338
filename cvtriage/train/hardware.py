"""Where and how a training run uses the machine: device, batch, mixed precision, data-loader
workers, and whether the decoded images are cached in RAM (cvtriage.train.training takes it)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from cvtriage.models import describe_device, resolve_device

logger = logging.getLogger(__name__)

CPU_BATCH = 16
# batch: auto on one GPU (training_batch): the largest of these that leaves at least
# MIN_ITERATIONS_PER_EPOCH iterations an epoch. 64 is Ultralytics' nominal batch (nbs): up to it,
# Ultralytics accumulates gradients to 64 images a step, so an epoch makes about N / 64 optimizer
# steps whatever the batch, and a larger batch only keeps the GPU busier; past it, steps fall with
# every image added (AutoBatch's ~1,000 on an H200 left 1,600 images 2 steps an epoch, and the
# model at mAP50 0.56 after 19 of 30 epochs where batch 32 reached 0.90). Below 16, BatchNorm's
# statistics get noisy.
GPU_BATCHES = (16, 32, 64)
# Ultralytics warms up (a small learning rate, accumulation ramping up) for max(warmup_epochs
# epochs, 100 iterations): under ~34 iterations an epoch the 100 stretch it past its 3 epochs.
# 50 keeps it to its epochs with room to spare: 1,600 training images get batch 32.
MIN_ITERATIONS_PER_EPOCH = 50
# Data-loader workers on CUDA: the cores but one (the training loop's), at most this many.
MAX_CUDA_WORKERS = 16
# Decoded training and val images are cached in RAM (Ultralytics' cache="ram") on CUDA when they
# take under this share of the memory available: the rest for the workers, the model, the machine.
CACHE_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Hardware:
    """Where and how to train: Ultralytics' device string, batch (a fraction below 1: AutoBatch at that
    share of GPU memory), AMP, loader workers, images cached in RAM."""

    device: str
    batch: int | float
    amp: bool
    workers: int
    cache: bool
    description: str

    @property
    def on_cuda(self) -> bool:
        return self.device not in ("cpu", "mps")


def training_batch(train_images: int) -> int:
    """batch: auto on one GPU: the largest of GPU_BATCHES that gives MIN_ITERATIONS_PER_EPOCH
    iterations an epoch (the smallest below that; see both for why)."""
    fitting = [batch for batch in GPU_BATCHES if train_images / batch >= MIN_ITERATIONS_PER_EPOCH]
    return max(fitting, default=GPU_BATCHES[0])


def fits_in_memory(images: int, imgsz: int) -> bool:
    """Whether `images` decoded at `imgsz` (at most imgsz x imgsz x 3 bytes each: Ultralytics caches
    them resized) take under CACHE_MEMORY_SHARE of the memory available now."""
    import psutil

    return images * imgsz * imgsz * 3 < CACHE_MEMORY_SHARE * psutil.virtual_memory().available


def choose_hardware(device: str, batch: int | float | str, workers: int | None, images: tuple[int, int] = (0, 0),
                    imgsz: int = 640) -> Hardware:  # fmt: skip
    """`images`: (training, val) images. CUDA: AMP on; batch auto by training_batch on one GPU (16 a
    GPU on several), a fraction below 1 as AutoBatch at that share of GPU memory; the cores but
    one as loader workers (at most MAX_CUDA_WORKERS) unless `workers` says; the decoded images
    cached in RAM where they fit (fits_in_memory). CPU: batch 16 (AutoBatch needs CUDA), AMP off,
    no loader workers whatever `workers` says (Ultralytics forces 0 there: the forward pass, not
    image loading, is the bottleneck), nothing cached."""
    chosen = resolve_device(device)
    cores = os.cpu_count() or 1
    on_cuda = chosen not in ("cpu", "mps")
    gpu_count = len(chosen.split(",")) if on_cuda else 0
    fraction = isinstance(batch, float)
    if batch == "auto" or (fraction and gpu_count != 1):  # AutoBatch measures one GPU: Ultralytics refuses more
        if fraction:
            logger.warning(f"batch {batch:g} (AutoBatch) needs one CUDA GPU: batch auto on {describe_device(chosen)}")
        batch = training_batch(images[0]) if gpu_count == 1 else CPU_BATCH * max(gpu_count, 1)
    if not on_cuda:
        workers = 0
    elif workers is None:
        workers = max(1, min(MAX_CUDA_WORKERS, cores - 1))
    cache = on_cuda and fits_in_memory(sum(images), imgsz)
    return Hardware(chosen, batch, amp=on_cuda, workers=workers, cache=cache, description=describe_device(chosen))

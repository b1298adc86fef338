"""Loading detectors and choosing the device: shared by scan, train and audit-labels."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cvtriage import OMP_NUM_THREADS_AT_START
from cvtriage.errors import CvtriageError, first_line
from cvtriage.logs import quieted
from cvtriage.paths import DEMO_WEIGHTS_NAME

# Names Ultralytics downloads by itself when they are not a local file.
HUB_SUFFIXES = (".pt",)


def inference_batch(batch: int | str, device: str, gpu_batch: int) -> int:
    """Images per model call: `batch`, or for "auto" 1 on the CPU and `gpu_batch` on CUDA. On the
    CPU a batch costs more per image than single images (a 2-core machine, yolo11n at 864 px:
    ~140 ms a frame in batches of 8, ~100 ms one at a time); batches pay off on a GPU."""
    if batch != "auto":
        return int(batch)
    return 1 if device == "cpu" else gpu_batch


def resolve_device(device: str = "auto") -> str:
    """'auto' -> first CUDA GPU when present, else 'cpu'. Asking for CUDA without one is an error."""
    import torch

    wanted = str(device).strip().lower()
    has_cuda = torch.cuda.is_available()
    if wanted == "auto":
        chosen = "0" if has_cuda else "cpu"
    elif wanted in ("cpu", "mps"):
        chosen = wanted
    elif wanted == "cuda" or wanted.replace(",", "").isdigit() or wanted.startswith("cuda:"):
        if not has_cuda:
            raise CvtriageError(f"--device {device}: no CUDA GPU is available here (use --device auto or cpu)")
        chosen = "0" if wanted == "cuda" else wanted.removeprefix("cuda:")
    else:
        raise CvtriageError(f"--device {device}: expected auto, cpu, cuda or a GPU index such as 0")
    if chosen == "cpu":
        # Ultralytics leaves torch on cores-1 threads for device='cpu'; use every core, or the cores
        # a scheduler gave this process (a Ray task with num_cpus=N runs with OMP_NUM_THREADS=N).
        # Training keeps this (train.py); a scan's predictor set-up puts Ultralytics' choice back.
        torch.set_num_threads(int(OMP_NUM_THREADS_AT_START or os.cpu_count() or 1))
    return chosen


def describe_device(device: str) -> str:
    import torch

    if device in ("cpu", "mps"):
        return f"{device.upper()} ({os.cpu_count()} cores)" if device == "cpu" else "Apple MPS"
    index = int(device.split(",")[0])
    return f"CUDA GPU {index}: {torch.cuda.get_device_name(index)}"


def load_model(weights: str | Path, task: str = "detect"):
    """An Ultralytics YOLO model from a .pt/.yaml/.onnx file or an exported folder, or a hub name."""
    from ultralytics import YOLO

    weights = str(weights)
    path = Path(weights)
    is_local = path.exists()
    if not is_local and (path.parent != Path(".") or not weights.endswith(HUB_SUFFIXES + (".yaml",))):
        raise CvtriageError(f"{weights}: weights file not found")
    try:
        model = YOLO(weights, task=task)
    except Exception as error:  # Ultralytics raises many types for an unusable file
        if not is_local and weights.endswith(HUB_SUFFIXES):
            raise CvtriageError(
                f"{weights}: could not download these weights (offline?); pass local weights "
                f"with --weights PATH, or the demo model shipped with cvtriage: --weights {DEMO_WEIGHTS_NAME}"
            ) from None
        raise CvtriageError(f"{weights}: cannot load these weights ({_reason(error)})") from None
    if model.task != task:
        raise CvtriageError(f"{weights}: a {model.task} model, expected a {task} model")
    return model


def ready_to_predict(model, weights: str | Path, imgsz: int, device: str) -> None:
    """The model's first call, which sets its predictor up (an exported model is compiled then,
    and tells its input size). Ultralytics opens an export (.onnx, a folder) and a file of no
    format it knows only here, so an unusable one fails here: one line, as load_model's."""
    import numpy as np

    try:
        with quieted("ultralytics", logging.ERROR):  # "Loading ... for OpenVINO inference", "Using OpenVINO LATENCY mode"
            model.predict([np.zeros((32, 32, 3), np.uint8)], imgsz=imgsz, device=device, verbose=False)
    except Exception as error:  # Ultralytics and the runtimes it loads raise many types
        raise CvtriageError(f"{weights}: cannot load these weights ({_reason(error)})") from None


def _reason(error: BaseException) -> str:
    """first_line, less the "ERROR ❌️" Ultralytics opens its own messages with; in our words
    where Ultralytics' would be a bare key or a list of every format it knows, cut short."""
    if isinstance(error, KeyError):  # a .yaml that is not a model's: the first key it lacks
        return f"no {error} in it: not a model .yaml"
    if "is not a supported model format" in str(error):
        return "not a model Ultralytics reads: a .pt, a .yaml, an .onnx or an export folder (OpenVINO, TensorRT, ...)"
    return re.sub(r"^ERROR\s*[\u274c\ufe0f]*\s*", "", first_line(error))


def class_names(model) -> dict[int, str]:
    return {int(index): str(name) for index, name in model.names.items()}


def resolve_classes(model, wanted: list[str] | None, source: str, hint: str = "") -> list[int] | None:
    """Class ids for the wanted names (case-insensitive); unknown names list what the model has,
    then `hint` (what the user can do about it)."""
    if not wanted:
        return None
    by_name = {name.lower(): index for index, name in class_names(model).items()}
    missing = [name for name in wanted if name.lower() not in by_name]
    if missing:
        known = ", ".join(class_names(model).values())
        raise CvtriageError(f"{source}: the model has no class {', '.join(repr(m) for m in missing)}; it has: {known}{hint}")
    return [by_name[name.lower()] for name in wanted]

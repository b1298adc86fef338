"""An OpenVINO export on the CPU, run directly: many images at once, in parallel inference requests.

Ultralytics' `predict` runs an OpenVINO export one image after another in OpenVINO's LATENCY mode
(one stream spreading each image over every core), after converting the whole batch to a float
tensor in torch; a small model like YOLOv8n keeps two cores only partly busy that way. The tiles
of a frame are independent: here each goes to its own inference request of a THROUGHPUT-mode
compile (one stream per core or two, so the requests run side by side), letterboxed and normalised
exactly as Ultralytics does it, and their raw outputs go through Ultralytics' own NMS and box
scaling, so the boxes are the ones `predict` returns (tests/test_detect.py checks that). A single
image keeps LATENCY mode, where one image is fastest.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cvtriage import OMP_NUM_THREADS_AT_START
from cvtriage.scan.backends.base import DetectorBackend, Thresholds
from cvtriage.scan.crops import STRIDE


def thread_share_config() -> dict[str, int]:
    """OpenVINO compile settings that keep a scheduler's share of the cores (a Ray task's
    num_cpus, given as OMP_NUM_THREADS), as PyTorch does (models.resolve_device): OpenVINO takes
    every core whatever OMP_NUM_THREADS says. Empty when no share was given."""
    threads = int(OMP_NUM_THREADS_AT_START or 0)
    return {"INFERENCE_NUM_THREADS": threads} if 0 < threads < (os.cpu_count() or 1) else {}


def openvino_xml(model) -> Path | None:
    """The .xml of the OpenVINO export an Ultralytics model was loaded from (Ultralytics keeps an
    exported model's path as `model.model`; PyTorch weights keep a module there), else None."""
    source = getattr(model, "model", None)
    if not isinstance(source, (str, Path)):
        return None
    path = Path(source)
    if path.suffix == ".xml" and path.is_file():
        return path
    if path.is_dir() and path.name.endswith("_openvino_model"):
        return next(iter(sorted(path.glob("*.xml"))), None)
    return None


class OpenVinoBackend(DetectorBackend):
    """An OpenVINO export run directly on lists of BGR images (see the module's docstring)."""

    batches = True  # every image of a call at once: they run side by side

    def __init__(self, xml: Path, thresholds: Thresholds):
        import openvino as ov

        self.device = "cpu"
        self.thresholds = thresholds
        self.core = ov.Core()
        self.network = self.core.read_model(str(xml), str(xml.with_suffix(".bin")))
        shape = self.network.input().get_partial_shape()
        # A fixed-size export pads every image to its input, as Ultralytics does; a dynamic one
        # takes each image letterboxed to the requested size, rounded to the stride.
        fixed = shape[2].is_static and shape[3].is_static
        self.fixed_shape = (int(shape[2].get_length()), int(shape[3].get_length())) if fixed else None
        self.fixed_size = max(self.fixed_shape) if self.fixed_shape else None
        self.any_size = self.fixed_shape is None
        self.requests: dict[str, list] = {}
        self.pool: ThreadPoolExecutor | None = None

    @classmethod
    def for_model(cls, model, device: str, thresholds: Thresholds) -> "OpenVinoBackend | None":
        """The direct runner for an Ultralytics model loaded from an OpenVINO export, on the CPU;
        None for other models and devices, exports fixed to batches of several, and int8 exports
        with dynamic shapes (OpenVINO's CPU plugin can crash on those; Ultralytics recompiles them
        per shape): those go through Ultralytics' `predict`."""
        xml = openvino_xml(model)
        if device != "cpu" or xml is None:
            return None
        try:
            backend = cls(xml, thresholds)
        except Exception:  # no or broken openvino package, unreadable IR: Ultralytics reports it
            return None
        shape = backend.network.input().get_partial_shape()
        one_at_a_time = shape.rank.get_length() == 4 and (shape[0].is_dynamic or shape[0].get_length() == 1)
        quantized = any(op.get_type_name() == "FakeQuantize" for op in backend.network.get_ops())
        if not one_at_a_time or (backend.fixed_size is None and quantized):
            return None
        return backend

    def _requests(self, parallel: bool) -> list:
        hint = "THROUGHPUT" if parallel else "LATENCY"
        if hint not in self.requests:
            compiled = self.core.compile_model(self.network, "CPU", {"PERFORMANCE_HINT": hint, **thread_share_config()})
            count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if parallel else 1
            self.requests[hint] = [compiled.create_infer_request() for _ in range(max(count, 1))]
        return self.requests[hint]

    def _blob(self, image: np.ndarray, imgsz: int) -> np.ndarray:
        import cv2
        from ultralytics.data.augment import LetterBox

        shape = self.fixed_shape or (imgsz, imgsz)
        letterboxed = LetterBox(shape, auto=self.fixed_shape is None, stride=STRIDE)(image=image)
        # NCHW, RGB, 0-1 float32: what Ultralytics' preprocess makes of a BGR uint8 image.
        return cv2.dnn.blobFromImage(letterboxed, 1 / 255.0, swapRB=True)

    def predict(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        import torch
        from ultralytics.utils import nms, ops

        requests = self._requests(parallel=len(images) > 1)
        if len(requests) > 1 and self.pool is None:
            self.pool = ThreadPoolExecutor(len(requests), thread_name_prefix="openvino")

        def run(worker: int) -> list[tuple[tuple[int, ...], np.ndarray]]:
            outputs = []
            for image in images[worker :: len(requests)]:
                blob = self._blob(image, imgsz)
                # The request reuses its output buffer: copy before the next image.
                outputs.append((blob.shape[2:], requests[worker].infer({0: blob})[0].copy()))
            return outputs

        parts = list(self.pool.map(run, range(len(requests)))) if len(requests) > 1 else [run(0)]
        raw: list = [None] * len(images)
        for worker, outputs in enumerate(parts):
            raw[worker :: len(requests)] = outputs
        limits = self.thresholds
        found = []
        for image, (input_shape, output) in zip(images, raw):
            boxes = nms.non_max_suppression(
                torch.from_numpy(output), limits.conf, limits.iou, limits.classes, limits.agnostic, max_det=limits.max_det
            )[0]
            boxes[:, :4] = ops.scale_boxes(input_shape, boxes[:, :4], image.shape)
            found.append(boxes.numpy().astype(np.float32, copy=False))
        return found

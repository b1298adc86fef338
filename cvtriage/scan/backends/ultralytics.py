"""Ultralytics' `predict`, for any model it loads: PyTorch weights, exports (OpenVINO, ONNX, ...),
or a stand-in with the same interface."""

from __future__ import annotations

import numpy as np

from cvtriage.scan.backends.base import DetectorBackend, Thresholds


def runs_pytorch(model) -> bool:
    """Whether an Ultralytics model runs with PyTorch (.pt weights; not an export such as OpenVINO)."""
    import torch

    return isinstance(getattr(model, "model", None), torch.nn.Module)


def accepts_any_input_size(model) -> bool:
    """PyTorch weights run at any input size, and so do exports with dynamic shapes (the scan's
    own OpenVINO export, see cvtriage.scan.export; known once the model's predictor is set up);
    other exported models (OpenVINO, ONNX, ...) are fixed to their export size (Ultralytics pads
    every input to it)."""
    backend = getattr(getattr(model, "predictor", None), "model", None)
    return runs_pytorch(model) or bool(getattr(backend, "dynamic", False))


def exported_input_size(model) -> int | None:
    """The fixed input side of an exported model (OpenVINO, ONNX, ... exported without `dynamic`),
    which Ultralytics reads from the export's metadata once the model's predictor is set up; None
    when the model takes any size or does not say."""
    backend = getattr(getattr(model, "predictor", None), "model", None)
    imgsz = getattr(backend, "imgsz", None)
    if imgsz is None or getattr(backend, "dynamic", False):
        return None
    return int(max(imgsz)) if isinstance(imgsz, (list, tuple)) else int(imgsz)


class UltralyticsBackend(DetectorBackend):
    """An Ultralytics model's own `predict`, its predictor already set up (cvtriage.scan.export
    model_to_run). `batches`: whether one call takes every image (a GPU, or a batch asked for);
    on the CPU, where a batch costs more per image, images go one at a time, which also keeps
    Ultralytics' rectangular letterbox where a batch of mixed shapes is padded to squares."""

    def __init__(self, model, device: str, thresholds: Thresholds, batches: bool):
        self.model = model
        self.device = device
        self.thresholds = thresholds
        self.any_size = accepts_any_input_size(model)
        self.fixed_size = exported_input_size(model)
        self.batches = batches
        predictor = getattr(model, "predictor", None)
        if runs_pytorch(model) and predictor is not None:
            from cvtriage.scan.features import BoxFeatureTap

            self.features = BoxFeatureTap.for_module(predictor.model)

    def predict(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        limits = self.thresholds
        if self.features is not None:
            self.features.start()
        results = self.model.predict(
            images, imgsz=imgsz, conf=limits.conf, iou=limits.iou, max_det=limits.max_det, agnostic_nms=limits.agnostic,
            classes=limits.classes, device=self.device, verbose=False,
        )  # fmt: skip
        return self.with_features(images, [result.boxes.data.cpu().numpy() for result in results])

"""Model backends behind one interface (base.DetectorBackend): Ultralytics' `predict` for any
model it loads, OpenVINO's runtime directly for an OpenVINO export on the CPU, and PyTorch
weights on batches letterboxed on the device for a dense scan."""

from __future__ import annotations

from cvtriage.scan.backends.base import DetectorBackend, Thresholds
from cvtriage.scan.backends.openvino import OpenVinoBackend
from cvtriage.scan.backends.torch_batched import TorchBatchedBackend
from cvtriage.scan.backends.ultralytics import UltralyticsBackend, runs_pytorch


def backend_for(model, device: str, thresholds: Thresholds, one_image_per_call: bool, dense: bool = False) -> DetectorBackend:
    """How to run an Ultralytics model (its predictor set up, cvtriage.scan.export.model_to_run):
    an OpenVINO export on the CPU runs directly, its images side by side; PyTorch weights in a
    dense scan (`dense`) on batches letterboxed on the device; anything else through Ultralytics'
    `predict`, one image a call where `one_image_per_call` (the CPU, `batch: auto`)."""
    direct = OpenVinoBackend.for_model(model, device, thresholds)
    if direct is None and dense and runs_pytorch(model) and getattr(model, "predictor", None) is not None:
        direct = TorchBatchedBackend(model, device, thresholds)
    return direct or UltralyticsBackend(model, device, thresholds, batches=not one_image_per_call)

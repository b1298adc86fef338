"""PyTorch weights run directly on batches of frames: letterboxed on the device, one model call.

Ultralytics' `predict` letterboxes each image on the CPU (OpenCV), stacks and copies the batch,
then converts it on the device: on a GPU, that CPU work and the copies, not the model, set the
pace. Here a batch of same-size BGR uint8 frames goes to the device as it is (one copy, from
pinned memory, not waiting on the copy where that is CUDA), and is turned there into the model's
input: resized, padded and normalised exactly as Ultralytics' LetterBox and preprocess do it
(tests/test_dense.py checks it on CPU tensors, to within one grey level), in half precision on
CUDA. The model is Ultralytics' own AutoBackend, and its raw output goes through Ultralytics' own
NMS and box scaling, so the boxes are the ones `predict` returns for each image alone.

The code does not care which device it runs on: on the CPU it is what the dense strategy's tests
run (cvtriage.scan.dense).
"""

from __future__ import annotations

import copy
import weakref

import numpy as np

from cvtriage.scan.backends.base import DetectorBackend, Thresholds

# Ultralytics' letterbox border: its grey (LetterBox's padding_value).
PAD_VALUE = 114.0

# model -> (device, the AutoBackend that runs it there), made once per model object: a batch's or
# a Ray worker's next video reuses it (the model itself is loaded once per worker).
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def letterbox_geometry(height: int, width: int, imgsz: int, stride: int, rectangular: bool = True) -> dict:
    """Ultralytics' LetterBox parameters for a height x width image at `imgsz` (its own
    get_params): `new_unpad` (width, height resized), and the border's top, bottom, left and
    right. `rectangular`: padded up to the stride on the short side (what `predict` does for
    weights that take any input size); otherwise to the imgsz x imgsz square."""
    from ultralytics.data.augment import LetterBox

    return LetterBox((imgsz, imgsz), auto=rectangular, stride=stride).get_params({"img": np.empty((height, width, 0))})


def letterbox_on_device(frames, geometry: dict, dtype):
    """A batch of BGR uint8 frames (N, H, W, 3), on any device, as the model's input: (N, 3, h, w)
    RGB in 0-1, resized bilinearly (OpenCV's INTER_LINEAR, rounded to whole grey levels as its
    uint8 output is) and padded with Ultralytics' grey, as `geometry` (letterbox_geometry) says."""
    import torch.nn.functional as F

    batch = frames.permute(0, 3, 1, 2).to(dtype)  # channels-last memory: what interpolate is fastest on
    new_width, new_height = geometry["new_unpad"]
    if (new_height, new_width) != tuple(batch.shape[2:]):
        batch = F.interpolate(batch, size=(new_height, new_width), mode="bilinear", align_corners=False).round_()
    batch = F.pad(batch.flip(1), (geometry["left"], geometry["right"], geometry["top"], geometry["bottom"]), value=PAD_VALUE)
    return batch.contiguous().div_(255)


def prepared_backend(model, device: str):
    """The AutoBackend that runs an Ultralytics model (its predictor set up: scan.export.model_to_run)
    on `device`: the predictor's own on the CPU; on CUDA a half-precision copy of it (the
    predictor's stays as it is for `predict`), made once per model object."""
    from ultralytics.nn.autobackend import AutoBackend

    known = _prepared.get(model)
    if known is not None and known[0] == device:
        return known[1]
    backend = model.predictor.model
    if backend.device.type == "cuda":
        # A copy of the predictor's module (fused, in eval mode), made half precision by AutoBackend.
        backend = AutoBackend(copy.deepcopy(backend.model), device=backend.device, fp16=True, fuse=True, verbose=False)
    _prepared[model] = (device, backend)
    return backend


class TorchBatchedBackend(DetectorBackend):
    """PyTorch weights, batches letterboxed on the device (see the module's docstring)."""

    batches = True  # every image of a call in one model call (those of one size together)
    any_size = True  # PyTorch weights: each size letterboxed to imgsz on the stride grid
    fixed_size = None

    def __init__(self, model, device: str, thresholds: Thresholds):
        self.model = prepared_backend(model, device)
        self.device = device
        self.thresholds = thresholds
        self.stride = int(self.model.stride)
        self._staging = None  # pinned host memory that batches are copied to the GPU from, reused
        from cvtriage.scan.features import BoxFeatureTap

        self.features = BoxFeatureTap.for_module(self.model)

    def predict(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for number, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(number)
        found: list = [None] * len(images)
        for numbers in by_shape.values():
            for number, rows in zip(numbers, self._predict_one_size([images[n] for n in numbers], imgsz)):
                found[number] = rows
        return found

    def _predict_one_size(self, images: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        import torch
        from ultralytics.utils import nms, ops

        height, width = images[0].shape[:2]
        geometry = letterbox_geometry(height, width, imgsz, self.stride)
        dtype = torch.float16 if self.model.fp16 else torch.float32
        with torch.inference_mode():
            batch = letterbox_on_device(self._to_device(images), geometry, dtype)
            if self.features is not None:
                self.features.start()
            output = self.model(batch)
            output = output[0] if isinstance(output, (list, tuple)) else output
            limits = self.thresholds
            kept = nms.non_max_suppression(
                output.float(), limits.conf, limits.iou, limits.classes, limits.agnostic, max_det=limits.max_det,
                end2end=getattr(self.model, "end2end", False),
            )  # fmt: skip
            for boxes in kept:
                boxes[:, :4] = ops.scale_boxes(batch.shape[2:], boxes[:, :4], (height, width))
            rows = torch.cat(kept).float().cpu().numpy()  # one copy back for the whole batch
            ends = np.cumsum([len(boxes) for boxes in kept])[:-1]
            return self.with_features(images, np.split(rows, ends))

    def _to_device(self, images: list[np.ndarray]):
        """The images as one uint8 (N, H, W, 3) tensor on the model's device: on CUDA copied from
        pinned memory without waiting (the staging memory is reused by the next batch, after this
        one's results have come back, which waits for the copy)."""
        import torch

        if self.model.device.type != "cuda":
            return torch.from_numpy(images[0][None] if len(images) == 1 else np.stack(images))
        shape = (len(images), *images[0].shape)
        if self._staging is None or self._staging.shape[0] < shape[0] or self._staging.shape[1:] != shape[1:]:
            self._staging = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        staged = self._staging[: shape[0]]
        for slot, image in zip(staged.numpy(), images):
            slot[...] = image
        return staged.to(self.model.device, non_blocking=True)

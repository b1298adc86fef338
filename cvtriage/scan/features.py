"""The detector's own features at each box it keeps, for "find more like this" (cvtriage.scan.similar).

YOLO's Detect head runs, on each of its levels (strides 8, 16, 32), a small class branch (`cv3`)
whose last layer is a 1x1 convolution from a feature map to the class scores: the map before it
(`cv3[i][-2]`) is what the model itself tells its classes apart by. Forward hooks keep those maps
from the model call the scan already makes; each box kept after NMS is then averaged over on every
level (ROI align over the box, in the model's input pixels) and the levels concatenated, each of
unit length: one vector per box, in one space whatever the box's size. An event's embedding is the
mean of its track's vectors (every frame inferred whole that follows it), so one odd frame (a
blur, the object half out of view) weighs little; how the vectors vary along each track is kept too
(ScanFeatures.residuals), for the index to whiten away (cvtriage.scan.similar). The model call is
not repeated, and nothing leaves the device but a few hundred numbers per box.

Device-agnostic torch: the CPU runs in the tests what a GPU runs in a dense scan. A model without
a YOLO Detect head in PyTorch (an OpenVINO export) has no maps to hook: the scan says so in one
line and the events keep their colour look (cvtriage.scan.looks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cvtriage.scan.keyframes import matching_box_index
from cvtriage.types import Event, FrameDetections


def detect_head(module):
    """The YOLO Detect head of a PyTorch detection model (DetectionModel, or an AutoBackend
    around one), or None when it has none with a class branch to hook."""
    inner = getattr(module, "model", None)
    layers = getattr(inner, "model", inner)  # AutoBackend -> DetectionModel -> its layers
    try:
        head = layers[-1]
    except (TypeError, IndexError, KeyError):
        return None
    branches = getattr(head, "cv3", None)
    if branches is None or not hasattr(head, "stride") or len(branches) != len(head.stride):
        return None
    return head


class BoxFeatureTap:
    """Forward hooks on a YOLO model's Detect head that keep the class branch's feature maps of the
    model calls between `start()` and `take()`, there only (see the module's docstring)."""

    def __init__(self, network, head):
        self.network = network
        self.head = head
        self.strides = [float(stride) for stride in head.stride]
        self._calls: list[tuple[tuple[int, int], list]] = []  # per model call: input (h, w), maps by level
        self._handles: list = []

    @classmethod
    def for_module(cls, module) -> "BoxFeatureTap | None":
        """A tap on the model's forward pass (an AutoBackend or DetectionModel), or None when it has
        no YOLO Detect head in PyTorch (an export): the scan then goes without features."""
        head = detect_head(module)
        network = getattr(module, "model", None) if head is not None else None
        return cls(network, head) if network is not None and hasattr(network, "register_forward_pre_hook") else None

    def _on_input(self, _module, args) -> None:
        self._calls.append((tuple(args[0].shape[2:]), []))

    def _on_level(self, _module, _args, output) -> None:
        if self._calls:
            self._calls[-1][1].append(output.detach())

    def start(self) -> None:
        """Keep the maps of the model calls from now on (until `take`)."""
        self._stop()
        self._handles = [self.network.register_forward_pre_hook(self._on_input)]
        self._handles += [branch[-2].register_forward_hook(self._on_level) for branch in self.head.cv3]

    def _stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def take(self, boxes: list, image_shapes: list[tuple[int, int]]) -> list[np.ndarray]:
        """The features (K, levels x channels) float32 of each image's kept boxes (K, 4: x1 y1 x2 y2
        in the image's pixels, a tensor or array), the images in the order the model saw them (any
        number of calls of any batch size); stops keeping maps. Empty (K, 0) arrays when the calls
        gave no maps (a head the hooks did not see run)."""
        import torch
        from torchvision.ops import roi_align

        self._stop()
        per_image = [(size, [level[n : n + 1] for level in maps]) for size, maps in self._calls for n in range(len(maps[0]) if maps else 0)]
        self._calls = []
        if len(per_image) != len(boxes) or any(len(maps) != len(self.strides) for _, maps in per_image):
            return [np.zeros((len(image_boxes), 0), np.float32) for image_boxes in boxes]
        found = []
        for (input_shape, maps), image_boxes, image_shape in zip(per_image, boxes, image_shapes):
            rois = torch.as_tensor(image_boxes, dtype=torch.float32, device=maps[0].device).reshape(-1, 4)
            if not len(rois):
                found.append(np.zeros((0, sum(level.shape[1] for level in maps)), np.float32))
                continue
            rois = torch.cat([torch.zeros(len(rois), 1, device=rois.device), input_boxes(rois, image_shape, input_shape)], 1)
            levels = [
                torch.nn.functional.normalize(
                    roi_align(level.float(), rois, 1, spatial_scale=1 / stride, sampling_ratio=-1, aligned=True).flatten(1), dim=1
                )
                for level, stride in zip(maps, self.strides)
            ]  # fmt: skip
            found.append(torch.nn.functional.normalize(torch.cat(levels, 1), dim=1).cpu().numpy())
        return found


def input_boxes(boxes, image_shape: tuple[int, int], input_shape: tuple[int, int]):
    """Boxes in an image's pixels mapped into the model's letterboxed input: the inverse of
    Ultralytics' scale_boxes (resized by one gain, rounded per side, padded equally each side)."""
    gain = min(input_shape[0] / image_shape[0], input_shape[1] / image_shape[1])
    new_h, new_w = (max(round(side * gain), 1) for side in image_shape[:2])
    pad_x, pad_y = round((input_shape[1] - new_w) / 2 - 0.1), round((input_shape[0] - new_h) / 2 - 0.1)
    scale = boxes.new_tensor([new_w / image_shape[1], new_h / image_shape[0]] * 2)
    return boxes * scale + boxes.new_tensor([pad_x, pad_y] * 2)


def track_features(event: Event, frames: Mapping[int, FrameDetections]) -> np.ndarray:
    """The features (n, D) float32 of the event's own box in each frame of its track (frames
    inferred whole) that carries them; (0, 0) when none does (an export's scan)."""
    vectors = []
    for point in event.track or []:
        frame = frames.get(point.frame)
        if frame is None or frame.features is None or not frame.features.shape[1]:
            continue
        index = matching_box_index(frame, point.box, event.class_id)
        if index is not None:
            vectors.append(frame.features[index].astype(np.float32))
    return np.array(vectors, np.float32) if vectors else np.zeros((0, 0), np.float32)


def event_features(event: Event, frames: Mapping[int, FrameDetections]) -> np.ndarray | None:
    """The event's embedding: the mean of its track's features, unit length; None without any."""
    vectors = track_features(event, frames)
    if not len(vectors):
        return None
    mean = vectors.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-6)).astype(np.float32)


@dataclass(frozen=True)
class ScanFeatures:
    """What a scan keeps of the detector's features (cvtriage.scan.similar reads them back)."""

    means: np.ndarray  # one row per event, in the events' order: `event_features`; NaN without
    # Each track point's features less its event's mean (events seen in 2+ frames): how one
    # object's features vary from frame to frame, which the index whitens away.
    residuals: np.ndarray


def scan_features(events: list[Event], frames: Mapping[int, FrameDetections]) -> ScanFeatures | None:
    """The events' features and their tracks' residuals; None when no event has any (an export)."""
    tracks = [track_features(event, frames) for event in events]
    width = next((vectors.shape[1] for vectors in tracks if len(vectors)), None)
    if width is None:
        return None
    means = [event_features(event, frames) for event in events]
    residuals = [vectors - vectors.mean(axis=0) for vectors in tracks if len(vectors) >= 2]
    return ScanFeatures(
        np.stack([mean if mean is not None else np.full(width, np.nan, np.float32) for mean in means]),
        np.concatenate(residuals).astype(np.float16) if residuals else np.zeros((0, width), np.float16),
    )


def keyframe_features(
    weights: str, events: list[Event], keyframes: Mapping[int, np.ndarray], imgsz: int, device: str
) -> ScanFeatures | None:
    """For a scan whose model gave no features (its OpenVINO export, which has no Detect head in
    PyTorch): each event's features at its box in its keyframe, from the same weights run by
    PyTorch, one model call an event. No tracks' residuals, so an index of them is not whitened
    (docs/benchmarks.md: the keyframe box alone, unwhitened, ranks below the shipped features).
    None when the weights have no Detect head to hook or there is no event."""
    from cvtriage.models import load_model, ready_to_predict

    if not events:
        return None
    model = load_model(weights)
    ready_to_predict(model, weights, imgsz, device)
    tap = BoxFeatureTap.for_module(model.predictor.model)
    if tap is None:
        return None
    means = {}
    for event in sorted(events, key=lambda event: event.best_frame):  # the keyframes in one pass over the video
        image = keyframes[event.event_id]
        tap.start()
        model.predict([image], imgsz=imgsz, device=device, verbose=False)  # for the maps: the box is the event's own
        vectors = tap.take([np.asarray([event.best_box_xyxy], np.float32)], [image.shape[:2]])[0]
        if not vectors.shape[1]:
            return None
        means[event.event_id] = vectors[0]
    rows = np.stack([means[event.event_id] for event in events]).astype(np.float32)
    return ScanFeatures(rows, np.zeros((0, rows.shape[1]), np.float16))

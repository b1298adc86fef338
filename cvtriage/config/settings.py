"""Every setting of every command, typed and range-checked (pydantic); the YAML files beside this
module hold their shipped values, with a comment each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from cvtriage.paths import DEMO_WEIGHTS, DEMO_WEIGHTS_NAME

TILE_PATTERN = re.compile(r"^(auto|off|\d+x\d+)$")
# FiftyOne dataset names we accept: a shared database holds everyone's datasets, so a name is
# plain, typed the same way by every member of a team, and fits in a shell command unquoted.
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Images per model call for inference (scan, audit): a number, or auto (cvtriage.models.inference_batch).
InferenceBatch = Annotated[int, Field(ge=1, le=256)] | Literal["auto"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_dataset_name(value: str | None) -> str | None:
    if value is not None and not DATASET_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a dataset name we accept: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 100 characters"
        )
    return value


def _demo_weights(value: str | None) -> str | None:
    # `demo` is the detector shipped inside the package (a wheel install has no weights/ folder to
    # point at), made an absolute path here, once: the scan's resume fingerprint and events.json
    # then record the real file. A local file named demo is reached as ./demo.
    return str(DEMO_WEIGHTS) if value == DEMO_WEIGHTS_NAME else value


class ProposalsConfig(StrictModel):
    """config/scan.yaml `proposals`: the cues of a --propose scan (cvtriage.scan.proposals)."""

    detector: bool = True
    detector_conf: float = Field(0.05, gt=0, lt=1)
    motion: bool = True
    motion_seconds: float = Field(0.2, gt=0, le=5)
    motion_threshold: float = Field(12.0, gt=0)
    contrast: bool = True
    contrast_threshold: float = Field(30.0, gt=0)
    background_px: int = Field(200, ge=8)
    min_side: int = Field(10, ge=2)
    max_side: int = Field(160, ge=4)
    max_aspect: float = Field(6.0, ge=1)
    work_side: int = Field(1280, ge=64)

    @model_validator(mode="after")
    def _sides_in_order(self) -> "ProposalsConfig":
        if self.min_side >= self.max_side:
            raise ValueError("min_side must be below max_side")
        if not (self.detector or self.motion or self.contrast):
            raise ValueError("at least one cue (detector, motion, contrast) must be on")
        return self


class TelemetryErrorsConfig(StrictModel):
    """Standard deviations of the telemetry's errors (cvtriage.telemetry.ground)."""

    gps_m: float = Field(1.5, ge=0)
    altitude_m: float = Field(1.0, ge=0)
    heading_deg: float = Field(2.0, ge=0)
    gimbal_deg: float = Field(1.0, ge=0)
    nadir_assumed_deg: float = Field(3.0, ge=0)
    course_deg: float = Field(15.0, ge=0)
    box_share: float = Field(0.05, ge=0, le=1)


class PositionsConfig(StrictModel):
    """Ground positions of events and their objects (cvtriage.telemetry.placement)."""

    camera: str | None = None
    focal_35mm: float | None = Field(None, gt=0, le=2000)
    ground_altitude_m: float | None = None
    errors: TelemetryErrorsConfig = Field(default_factory=TelemetryErrorsConfig)
    same_object_share: float = Field(1.0, gt=0, le=5)


class ScanConfig(StrictModel):
    weights: str = "yolo11n.pt"
    classes: list[str] | None = None
    conf: float = Field(0.3, gt=0, lt=1)
    iou: float = Field(0.5, gt=0, le=1)
    agnostic_nms: bool = True
    imgsz: int = Field(640, ge=32, le=4096)
    every: int | None = Field(None, ge=1)
    fps: float | None = Field(2.0, gt=0)
    batch: InferenceBatch = "auto"
    tile: str = "auto"
    tile_overlap: float = Field(0.15, ge=0, lt=0.5)
    tile_full_frame: bool = False
    device: str = "auto"
    export: Literal["auto", "off"] = "auto"
    strategy: Literal["auto", "dense", "refine"] = "auto"
    dense_step: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    refine: bool = True
    refine_crop: bool = True
    track_gap_seconds: float = Field(1.0, gt=0)
    track_speed: float = Field(20.0, gt=0)
    min_event_frames: int = Field(2, ge=1)
    out: str = "runs/scan"
    dataset: str | None = "cvtriage-scan"
    replace_decisions: bool = False
    jpeg_quality: int = Field(90, ge=10, le=100)
    propose: bool = False
    proposals: ProposalsConfig = Field(default_factory=ProposalsConfig)
    positions: PositionsConfig = Field(default_factory=PositionsConfig)

    @field_validator("classes", mode="before")
    @classmethod
    def _split_classes(cls, value: Any) -> Any:
        # The CLI passes "ladder,fire extinguisher"; YAML passes a list.
        if isinstance(value, str):
            names = [name.strip() for name in value.split(",") if name.strip()]
            return names or None
        return value

    _dataset_name = field_validator("dataset")(_check_dataset_name)
    _weights = field_validator("weights")(_demo_weights)

    @field_validator("export", mode="before")
    @classmethod
    def _export_off(cls, value: Any) -> Any:
        # YAML reads an unquoted `off` as false (and `on` as true).
        if isinstance(value, bool):
            return "auto" if value else "off"
        return value

    @field_validator("tile")
    @classmethod
    def _check_tile(cls, value: str) -> str:
        if not TILE_PATTERN.match(value):
            raise ValueError("must be auto, off, or RxC such as 2x3")
        if "x" in value and min(int(side) for side in value.split("x")) < 1:
            raise ValueError(f"{value}: rows and columns must be at least 1")
        return value

    @field_validator("out")
    @classmethod
    def _out_is_a_folder(cls, value: str) -> str:
        # Results go to <out>/<video stem>/: a file there would fail only after the whole scan.
        if Path(value).exists() and not Path(value).is_dir():
            raise ValueError(f"{value} is a file, not a folder")
        return value

    @model_validator(mode="after")
    def _one_sampling_rule(self) -> "ScanConfig":
        if self.every is not None and self.fps is not None:
            raise ValueError("set `every` or `fps`, not both")
        if self.propose and self.classes:
            raise ValueError("a proposal scan looks for objects of any class: drop `classes` (--classes)")
        if self.propose and self.strategy == "dense":
            raise ValueError("a proposal scan samples frames (its cues are CPU work per frame): drop `strategy: dense`")
        return self


class AugmentConfig(StrictModel):
    """Ultralytics' augmentation settings that suit aerial views (config/train.yaml explains each)."""

    fliplr: float = Field(0.5, ge=0, le=1)
    flipud: float = Field(0.5, ge=0, le=1)
    degrees: float = Field(15.0, ge=0, le=180)
    translate: float = Field(0.1, ge=0, le=0.9)
    scale: float = Field(0.5, ge=0, le=0.9)
    mosaic: float = Field(1.0, ge=0, le=1)
    close_mosaic: int = Field(5, ge=0)
    hsv_h: float = Field(0.015, ge=0, le=1)
    hsv_s: float = Field(0.7, ge=0, le=1)
    hsv_v: float = Field(0.4, ge=0, le=1)


class TrainConfig(StrictModel):
    """config/train.yaml: the class list, the training settings and the aerial augmentations."""

    names: list[str] = Field(min_length=1)
    weights: str = "yolo11n.pt"
    epochs: int = Field(50, ge=1)
    imgsz: int = Field(640, ge=32, le=4096)
    batch: int | float | Literal["auto"] = "auto"
    device: str = "auto"
    workers: int | None = Field(None, ge=0, le=64)
    freeze: int | None = Field(None, ge=0)
    patience: int = Field(20, ge=0)
    optimizer: Literal["auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp"] = "auto"
    lr0: float = Field(0.01, gt=0, le=1)
    warmup_epochs: float = Field(3.0, ge=0)
    seed: int = 0
    out: str = "runs/train"
    name: str | None = None
    export: list[Literal["onnx", "openvino"]] = Field(default_factory=list)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    _weights = field_validator("weights")(_demo_weights)

    @field_validator("batch", mode="before")
    @classmethod
    def _batch_or_fraction(cls, value: Any) -> Any:
        # A whole number of images, auto, or a share of GPU memory for Ultralytics' AutoBatch (0.6);
        # the CLI passes text.
        text = str(value).strip().lower()
        try:
            number = float(text)
        except ValueError:
            number = None
        if text == "auto":
            return "auto"
        if number is not None and number.is_integer() and 1 <= number <= 1024 and "." not in text:
            return int(number)
        if number is not None and 0 < number < 1:
            return number
        raise ValueError(
            f"{value!r}: expected auto, a number of images from 1 to 1024, or a share of GPU memory below 1 "
            "for AutoBatch (such as 0.6)"
        )

    @field_validator("export", mode="before")
    @classmethod
    def _split_formats(cls, value: Any) -> Any:
        # The CLI passes "onnx,openvino"; YAML passes a list (or null for none).
        if value is None:
            return []
        if isinstance(value, str):
            return [name.strip().lower() for name in value.split(",") if name.strip()]
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "/" in value or "\\" in value):
            raise ValueError("must be a plain folder name (use --out for the parent folder)")
        return value


class AuditConfig(StrictModel):
    """config/audit.yaml: how `audit-labels` predicts, matches and ranks likely label errors."""

    weights: str | None = None
    dataset: str | None = None
    split: Literal["train", "val", "test", "all"] = "all"
    conf: float = Field(0.01, gt=0, lt=1)
    iou: float = Field(0.6, gt=0, le=1)
    imgsz: int = Field(640, ge=32, le=4096)
    batch: InferenceBatch = "auto"
    device: str = "auto"
    evaluate_conf: float = Field(0.05, gt=0, lt=1)
    match_iou: float = Field(0.5, gt=0, lt=1)
    location_min_iou: float = Field(0.1, gt=0, lt=1)
    missing_confidence: float = Field(0.95, gt=0, lt=1)
    min_score: float | None = Field(None, ge=0, le=1)
    flag_precision: float = Field(0.5, gt=0, lt=1)
    assumed_error_rate: float = Field(0.05, gt=0, le=0.5)
    ignore_border: bool = False
    top: int | None = Field(None, ge=1)
    out: str | None = None
    class_map: dict[str, str] = Field(default_factory=dict)
    strict: bool = False

    _dataset_name = field_validator("dataset")(_check_dataset_name)
    _weights = field_validator("weights")(_demo_weights)

    @field_validator("class_map", mode="before")
    @classmethod
    def _read_mapping(cls, value: Any) -> Any:
        # The CLI passes ["human=person", ...]; YAML passes a mapping (or null for none).
        if value is None:
            return {}
        if isinstance(value, (list, tuple)):
            pairs = [str(item).split("=") for item in value]
            bad = [item for item, pair in zip(value, pairs) if len(pair) != 2 or not all(part.strip() for part in pair)]
            if bad:
                raise ValueError(f"{bad[0]!r}: expected LABEL_CLASS=MODEL_CLASS, such as human=person")
            return {label.strip(): model.strip() for label, model in pairs}
        return value

    @model_validator(mode="after")
    def _location_below_match(self) -> "AuditConfig":
        if self.location_min_iou >= self.match_iou:
            raise ValueError("location_min_iou must be below match_iou")
        return self


class BatchConfig(StrictModel):
    """config/batch.yaml: what each video's Ray task asks of the cluster."""

    cpus_per_video: float = Field(1.0, gt=0)
    gpus_per_video: float | Literal["auto"] = "auto"
    max_retries: int = Field(3, ge=0)
    connect_timeout_s: float = Field(5.0, gt=0)

    @field_validator("gpus_per_video")
    @classmethod
    def _not_negative(cls, value: float | str) -> float | str:
        if value != "auto" and value < 0:
            raise ValueError("must be auto or a number >= 0")
        return value


class HarvestConfig(StrictModel):
    """config/harvest.yaml: how reviewers' decisions on scan events become a YOLO dataset."""

    view_shift: float = Field(0.05, ge=0, le=1)
    view_scale: float = Field(1.25, ge=1)
    decided_iou: float = Field(0.5, gt=0, le=1)
    undecided: Literal["mask", "skip"] = "mask"
    context: float = Field(1.0, ge=0)
    partial_view_area: float = Field(0.5, ge=0, le=1)
    split_by: Literal["auto", "event", "video"] = "auto"
    split_seconds: float = Field(20.0, gt=0)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    classes: Literal["model", "decided"] = "model"
    new_classes: list[str] = Field(default_factory=list)
    ignore_tags: list[str] = Field(default_factory=list)
    jpeg_quality: int = Field(95, ge=10, le=100)

    @field_validator("new_classes", "ignore_tags", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class SidecarKeys(StrictModel):
    """Where a sidecar JSON keeps each value: candidate keys, the first present wins; a dotted key
    (`gps.lat`) looks inside nested objects."""

    latitude: list[str] = ["latitude", "lat", "gps.latitude", "gps.lat", "GPSLatitude"]
    longitude: list[str] = ["longitude", "lon", "lng", "gps.longitude", "gps.lon", "GPSLongitude"]
    altitude: list[str] = ["altitude", "alt", "absolute_altitude", "gps.altitude", "GPSAltitude"]
    height: list[str] = ["relative_altitude", "height", "rel_alt", "RelativeAltitude"]
    heading: list[str] = ["heading", "yaw", "flight_yaw", "FlightYawDegree", "GimbalYawDegree"]
    time: list[str] = ["time", "timestamp", "captured_at", "datetime", "DateTimeOriginal"]
    image: list[str] = ["image", "image_name", "filename", "file"]


class IngestConfig(StrictModel):
    """config/watch.yaml: how `cvtriage watch` pairs images with their JSON sidecars."""

    out: str = "runs/watch"
    dataset: str | None = "cvtriage-watch"
    pair_timeout: float = Field(600.0, gt=0)  # seconds; "10m", "30s", "2h" accepted
    settle_seconds: float = Field(2.0, gt=0)
    poll_seconds: float = Field(0.25, gt=0)
    rescan_seconds: float = Field(30.0, gt=0)
    max_sidecar_bytes: int = Field(1_000_000, ge=1)
    batch_pairs: int = Field(16, ge=1, le=1024)
    in_progress: list[str] = Field(default_factory=lambda: [".*", "*.part", "*.partial", "*.tmp", "*.crdownload", "*.filepart"])
    sidecar_keys: SidecarKeys = Field(default_factory=SidecarKeys)

    _dataset_name = field_validator("dataset")(_check_dataset_name)

    @field_validator("pair_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = DURATION.match(value)
            if match is None:
                raise ValueError(f"{value!r} is not a duration such as 90s, 10m or 2h")
            return float(match.group(1)) * DURATION_UNITS[match.group(2)]
        return value

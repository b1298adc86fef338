"""Processing a complete pair: check both halves, run the scan's detector on the image, store one
FiftyOne sample, append one `pairs.csv` row.

Exactly once, across kills: the FiftyOne sample carries the pair's key under a unique index, and
a pair whose sample is already there (stored just before a kill, before the ledger said so) is
not stored again; the ledger then records the pair processed with its CSV row, and the row is
appended to `pairs.csv` (a row lost to a kill between the two is appended at the next start).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvtriage.boxes import xyxy_to_xywh
from cvtriage.config import IngestConfig, ScanConfig
from cvtriage.errors import CvtriageError
from cvtriage.ingest.ledger import Pair
from cvtriage.models import (
    class_names,
    inference_batch,
    resolve_classes,
    resolve_device,
)
from cvtriage.scan.detector import Detector
from cvtriage.scan.export import model_to_run
from cvtriage.scan.store import FLAGGED_TAG
from cvtriage.telemetry.sidecar import Sidecar, read_sidecar
from cvtriage.types import FrameDetections

PAIRS_CSV = "pairs.csv"
PAIR_COLUMNS = [
    "name", "image", "sidecar", "processed_at", "width", "height", "detections", "classes", "max_confidence",
    "latitude", "longitude", "altitude", "height_m", "heading", "captured_at",
]  # fmt: skip
GPU_PAIR_BATCH = 8

logger = logging.getLogger(__name__)


@dataclass
class Checked:
    """A pair whose halves are both sound, ready for the detector."""

    pair: Pair
    image_path: Path
    image: np.ndarray  # BGR
    size_bytes: int
    sidecar: Sidecar


@dataclass
class Outcome:
    processed: dict[str, list]  # name -> pairs.csv row
    flagged: int
    bad: list[tuple[Pair, str]]  # pairs to quarantine, with the reason
    changed: list[tuple[Pair, str]]  # (pair, kind) of halves deleted or rewritten since they settled


def decode_image(path: Path) -> tuple[np.ndarray, int]:
    """(BGR image, bytes) of a whole image file; CvtriageError if it does not decode or is cut
    short. Pillow, because it tells a truncated file (a JPEG without its end) from a whole one,
    where OpenCV decodes the part it has and fills the rest with grey."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    # Pillow's own open: Ultralytics replaces Image.open with one that, on a file no plugin
    # identifies, installs a HEIF plugin (pip, when online) and fails offline with an ImportError.
    open_image = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", Image.open)
    data = path.read_bytes()
    try:
        with open_image(io.BytesIO(data)) as opened:
            opened.load()
            # As OpenCV reads images for the scan: EXIF orientation applied.
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, ImportError):
        raise CvtriageError(f"{path.name}: not an image any decoder here reads") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise CvtriageError(f"{path.name}: image does not decode ({str(error).strip() or type(error).__name__})") from None
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1]), len(data)


def _plain_keys(value: Any) -> Any:
    """The sidecar as FiftyOne can store it: MongoDB keys hold no '.' and start with no '$'."""
    if isinstance(value, dict):
        return {str(key).replace(".", "_").lstrip("$") or "_": _plain_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_keys(item) for item in value]
    return value


class PairProcessor:
    def __init__(self, folder: Path, out: Path, scan: ScanConfig, settings: IngestConfig, model=None):
        self.folder = folder
        self.out = out
        self.scan = scan
        self.settings = settings
        self.device = resolve_device(scan.device)
        # On the CPU, the weights' OpenVINO export, as a scan runs it (cvtriage.scan.export).
        self.model = model_to_run(scan, self.device, model)[0]
        self.class_names = class_names(self.model)
        self.class_ids = resolve_classes(self.model, scan.classes, f"--classes (model {scan.weights})")
        self.batch = inference_batch(scan.batch, self.device, GPU_PAIR_BATCH)
        self.detectors: dict[tuple[int, int], Detector] = {}  # by image size: tiling depends on it
        self.dataset = self._dataset() if settings.dataset is not None else None
        self.csv_path = out / PAIRS_CSV

    # -- FiftyOne ------------------------------------------------------------------------------

    def _dataset(self):
        import fiftyone as fo

        name = self.settings.dataset
        dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
        if len(dataset) and "pair_key" not in dataset.get_field_schema():
            raise CvtriageError(f"FiftyOne dataset '{name}' exists and holds no watched pairs: use another --dataset")
        dataset.persistent = True
        if "pair_key" not in dataset.get_field_schema():
            dataset.add_sample_field("pair_key", fo.StringField)
        dataset.create_index("pair_key", unique=True)  # a pair can never be stored twice
        return dataset

    def key(self, pair: Pair) -> str:
        return f"{self.folder}/{pair.name}"

    def _store(self, checked: list[Checked], found: list[FrameDetections]) -> None:
        import fiftyone as fo
        from fiftyone import ViewField as F

        keys = [self.key(item.pair) for item in checked]
        stored = set(self.dataset.match(F("pair_key").is_in(keys)).values("pair_key"))
        samples = []
        for item, detections, key in zip(checked, found, keys):
            if key in stored:
                continue  # stored before a kill, before the ledger knew: not twice
            height, width = item.image.shape[:2]
            sample = fo.Sample(
                filepath=str(item.image_path),
                tags=[FLAGGED_TAG] if len(detections) else [],
                metadata=fo.ImageMetadata(size_bytes=item.size_bytes, width=width, height=height, num_channels=3),
                detections=fo.Detections(detections=[
                    fo.Detection(
                        label=self.class_names.get(int(class_id), str(class_id)),
                        bounding_box=box,
                        confidence=float(score),
                    )
                    for box, score, class_id in zip(
                        (xyxy_to_xywh(detections.boxes_xyxy) / (width, height, width, height)).tolist(),
                        detections.scores, detections.class_ids,
                    )
                ]),
                pair_key=key,
                pair_name=item.pair.name,
                sidecar=_plain_keys(item.sidecar.data),
            )  # fmt: skip
            where = item.sidecar.position
            if where is not None:
                sample["location"] = fo.GeoLocation(point=where.geo_point())  # [longitude, latitude]
                for field, value in (("altitude", where.altitude), ("height", where.height),
                                     ("heading", where.heading), ("captured_at", where.time)):  # fmt: skip
                    if value is not None:
                        sample[field] = value
            samples.append(sample)
        if samples:
            self.dataset.add_samples(samples, progress=False)

    # -- checking and detecting ----------------------------------------------------------------

    def check(self, pair: Pair) -> Checked | str | tuple[str]:
        """A Checked pair, the reason it goes to quarantine, or (kind,) of a half deleted or
        written again since it settled (read it then and it may be half-written)."""
        image_path, sidecar_path = self.folder / pair.image, self.folder / pair.sidecar
        for kind, path, stamp in (("image", image_path, pair.image_stamp), ("sidecar", sidecar_path, pair.sidecar_stamp)):
            try:
                stat = path.stat()
            except OSError:
                return (kind,)
            if stamp is not None and stamp != f"{stat.st_size}:{stat.st_mtime_ns}":
                return (kind,)
        try:
            sidecar = read_sidecar(sidecar_path, self.settings.sidecar_keys, self.settings.max_sidecar_bytes)
            if sidecar.image_name is not None and sidecar.image_name != pair.image:
                return f"{pair.sidecar}: describes {sidecar.image_name}, not {pair.image}"
            image, size_bytes = decode_image(image_path)
        except CvtriageError as error:
            return str(error)
        except FileNotFoundError:
            return ("image",) if not image_path.is_file() else ("sidecar",)
        return Checked(pair, image_path, image, size_bytes, sidecar)

    def _detect(self, checked: list[Checked]) -> list[FrameDetections]:
        found: list[FrameDetections | None] = [None] * len(checked)
        by_size: dict[tuple[int, int], list[int]] = {}
        for number, item in enumerate(checked):
            by_size.setdefault(item.image.shape[1::-1], []).append(number)
        for (width, height), numbers in by_size.items():
            detector = self.detectors.get((width, height))
            if detector is None:
                detector = Detector.for_model(self.model, self.scan, self.class_ids, self.device, width, height)
                self.detectors[(width, height)] = detector
            for start in range(0, len(numbers), self.batch):
                chunk = numbers[start : start + self.batch]
                results = detector.detect([(number, 0.0, checked[number].image) for number in chunk])
                for number, result in zip(chunk, results):
                    found[number] = result.at_least(self.scan.conf)
        return found

    def process(self, pairs: list[Pair]) -> Outcome:
        """Check, detect and store a batch of ready pairs. The caller records the outcome in the
        ledger (processed, quarantined, changed) and then appends the rows (`append_rows`)."""
        checked, bad, changed = [], [], []
        for pair in pairs:
            result = self.check(pair)
            if isinstance(result, Checked):
                checked.append(result)
            elif isinstance(result, tuple):
                changed.append((pair, result[0]))
            else:
                bad.append((pair, result))
        found = self._detect(checked)
        if self.dataset is not None and checked:
            self._store(checked, found)
        rows = {item.pair.name: self._row(item, detections) for item, detections in zip(checked, found)}
        return Outcome(rows, sum(1 for detections in found if len(detections)), bad, changed)

    def _row(self, item: Checked, detections: FrameDetections) -> list:
        height, width = item.image.shape[:2]
        counts: dict[str, int] = {}
        for class_id in detections.class_ids:
            name = self.class_names.get(int(class_id), str(class_id))
            counts[name] = counts.get(name, 0) + 1
        where = item.sidecar.position
        located = [where.latitude, where.longitude, where.altitude, where.height, where.heading, where.time] if where else [None] * 6
        return [
            item.pair.name, item.pair.image, item.pair.sidecar, time.strftime("%Y-%m-%dT%H:%M:%S%z"), width, height,
            len(detections), ";".join(f"{name}:{count}" for name, count in sorted(counts.items())),
            round(float(detections.scores.max()), 4) if len(detections) else None,
            *located,
        ]  # fmt: skip

    # -- pairs.csv -----------------------------------------------------------------------------

    def append_rows(self, rows: list[list]) -> None:
        new = not self.csv_path.exists()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if new:
            writer.writerow(PAIR_COLUMNS)
        writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
        with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def reconcile_csv(self, processed: list[tuple[str, list]]) -> int:
        """At start: drop a row torn by a kill mid-write, append the rows of pairs the ledger says
        were processed but the CSV lacks (a kill between the two). Returns the rows appended."""
        listed: set[str] = set()
        if self.csv_path.exists():
            data = self.csv_path.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]
            if len(whole) != len(data):
                with open(self.csv_path, "r+b") as handle:
                    handle.truncate(len(whole))
            rows = list(csv.reader(io.StringIO(whole.decode("utf-8"))))
            listed = {row[0] for row in rows[1:] if row}
            if not rows:
                self.csv_path.unlink()  # torn inside its header: start it again
        missing = [row for name, row in processed if name not in listed]
        if missing:
            self.append_rows(missing)
        return len(missing)

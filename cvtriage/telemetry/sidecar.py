"""Sidecar JSON: the metadata that arrives beside an image, under the same name (`NAME.json`).

Which keys hold the position, time and image name differs by tool; `config/watch.yaml`
(`sidecar_keys`) lists the candidates, so the format is configured, not coded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvtriage.config import SidecarKeys
from cvtriage.errors import CvtriageError
from cvtriage.telemetry.types import Position

SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class Sidecar:
    path: Path
    data: dict[str, Any]
    position: Position | None
    image_name: str | None  # the image the sidecar says it describes, when it says


def read_sidecar(path: Path, keys: SidecarKeys, max_bytes: int) -> Sidecar:
    """Read and check one sidecar; any problem is a CvtriageError naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CvtriageError(f"{path.name}: {size:,} bytes, over the sidecar size limit of {max_bytes:,}")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise CvtriageError(f"{path.name}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise CvtriageError(f"{path.name}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CvtriageError(f"{path.name}: not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise CvtriageError(f"{path.name}: a JSON {type(data).__name__}, expected an object of metadata")
    image = _lookup(data, keys.image)
    image_name = Path(str(image[1])).name if image is not None else None
    return Sidecar(path, data, sidecar_position(data, keys, path.name), image_name)


def _lookup(data: dict, candidates: list[str]) -> tuple[str, Any] | None:
    """(key, value) of the first candidate key present (dotted keys look into nested objects)."""
    for key in candidates:
        value: Any = data
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            if value is not None:
                return key, value
    return None


def _number(found: tuple[str, Any] | None, name: str) -> float | None:
    if found is None:
        return None
    key, value = found
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CvtriageError(f"{name}: `{key}` is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise CvtriageError(f"{name}: `{key}` is {value!r}, not a finite number")
    return number


def sidecar_position(data: dict, keys: SidecarKeys, name: str) -> Position | None:
    """The position a sidecar holds, or None when it holds no latitude/longitude."""
    latitude = _number(_lookup(data, keys.latitude), name)
    longitude = _number(_lookup(data, keys.longitude), name)
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise CvtriageError(f"{name}: latitude {latitude}, longitude {longitude} is not a position on Earth")
    time = _lookup(data, keys.time)
    return Position(
        latitude,
        longitude,
        altitude=_number(_lookup(data, keys.altitude), name),
        height=_number(_lookup(data, keys.height), name),
        heading=_number(_lookup(data, keys.heading), name),
        time=str(time[1]) if time is not None else None,
    )

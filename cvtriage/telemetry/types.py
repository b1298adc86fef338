"""Core types of the telemetry package: a position, and what a source's positions look like."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class Position:
    """Where the camera was. Degrees (WGS84); metres; heading in degrees clockwise from north."""

    latitude: float
    longitude: float
    altitude: float | None = None  # above sea level, or as the device reports it
    height: float | None = None  # above the take-off point, when the device reports it
    heading: float | None = None
    time: str | None = None  # the device's own clock, as ISO 8601 text
    # The camera, where the log has it (enterprise DJI SRTs, the Phantom 4's G.PRY): gimbal pitch
    # (-90 straight down, 0 level), its yaw (degrees clockwise from north) and roll; and the lens's
    # 35 mm-equivalent focal length (`focal_len`).
    gimbal_pitch: float | None = None
    gimbal_yaw: float | None = None
    gimbal_roll: float | None = None
    focal_35mm: float | None = None

    def as_dict(self) -> dict:
        """The known values; degrees to 7 decimals (about 1 cm), the rest to 3 (interpolated values
        would otherwise print float noise)."""
        return {
            key: round(value, 7 if key in ("latitude", "longitude") else 3) if isinstance(value, float) else value
            for key, value in asdict(self).items()
            if value is not None
        }

    def geo_point(self) -> list[float]:
        """GeoJSON / FiftyOne order: [longitude, latitude]."""
        return [self.longitude, self.latitude]


class Positions(Protocol):
    """A source's positions: by frame index (image folders) or by video time (telemetry logs)."""

    description: str

    def at(self, frame_index: int, time_s: float) -> Position | None: ...

    def path(self) -> list[Position]:
        """Every known position in order, for drawing the flight path."""
        ...

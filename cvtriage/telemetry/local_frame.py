"""Metres on the ground around a site, and back to latitude and longitude (pyproj, the PROJ library).

Everything that measures on the ground (an object's offset from the drone, the distance between two
sightings, the offset between two flights) works in an azimuthal equidistant projection centred on
the site: east and north in metres, exact in distance and direction from its centre and within a
millimetre over the few kilometres of a flight.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np


@functools.lru_cache(maxsize=64)
def _transformers(latitude: float, longitude: float) -> tuple:
    """PROJ's transformers to and from the frame (made once per origin: each takes PROJ tens of ms)."""
    from pyproj import CRS, Transformer

    local = CRS.from_proj4(f"+proj=aeqd +lat_0={latitude} +lon_0={longitude} +datum=WGS84 +units=m")
    return Transformer.from_crs("EPSG:4326", local, always_xy=True), Transformer.from_crs(local, "EPSG:4326", always_xy=True)


@dataclass
class LocalFrame:
    latitude: float  # the frame's origin
    longitude: float
    _forward: object = field(default=None, init=False, repr=False)
    _backward: object = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self._forward, self._backward = _transformers(float(self.latitude), float(self.longitude))

    def metres(self, latitude, longitude) -> tuple[np.ndarray, np.ndarray]:
        """(east, north) in metres of points in degrees (scalars or arrays)."""
        east, north = self._forward.transform(np.asarray(longitude, float), np.asarray(latitude, float))
        return np.asarray(east), np.asarray(north)

    def degrees(self, east, north) -> tuple[np.ndarray, np.ndarray]:
        """(latitude, longitude) of points given in metres east and north of the origin."""
        longitude, latitude = self._backward.transform(np.asarray(east, float), np.asarray(north, float))
        return np.asarray(latitude), np.asarray(longitude)

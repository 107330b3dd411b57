"""Where the simulated collars graze: paddock polygons and the geometry a geofence needs.

Every simulated collar lives in one paddock, chosen from its device id alone
(`collar_paddock`), so a geofence rule can find a collar's polygon without
talking to the simulator. Polygons are (lat, lon) vertices in order, not closed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

Point = tuple[float, float]  # (lat, lon), degrees

#: Metres per degree of latitude (spherical Earth is plenty for a few hundred metres).
M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class Paddock:
    name: str
    polygon: tuple[Point, ...]

    @property
    def centroid(self) -> Point:
        lats, lons = zip(*self.polygon)
        return sum(lats) / len(lats), sum(lons) / len(lons)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lat, min lon, max lat, max lon)."""
        lats, lons = zip(*self.polygon)
        return min(lats), min(lons), max(lats), max(lons)

    def contains(self, lat: float, lon: float) -> bool:
        return point_in_polygon(lat, lon, self.polygon)


#: Three convex paddocks of a grazing farm in western Victoria, each a few hundred metres across.
PADDOCKS: tuple[Paddock, ...] = (
    Paddock("north", ((-37.7360, 142.0150), (-37.7360, 142.0230), (-37.7395, 142.0245), (-37.7400, 142.0160))),
    Paddock("river", ((-37.7405, 142.0160), (-37.7410, 142.0250), (-37.7450, 142.0240), (-37.7455, 142.0190),
                      (-37.7440, 142.0150))),
    Paddock("hill", ((-37.7405, 142.0260), (-37.7400, 142.0340), (-37.7440, 142.0350), (-37.7450, 142.0270))),
)


def collar_paddock(device_id: str) -> Paddock:
    """The paddock a simulated collar lives in (stable: crc32 of the id, not Python's salted hash)."""
    return PADDOCKS[zlib.crc32(device_id.encode()) % len(PADDOCKS)]


def point_in_polygon(lat: float, lon: float, polygon: tuple[Point, ...]) -> bool:
    """Ray casting; points exactly on an edge may fall either way."""
    inside = False
    n = len(polygon)
    for i in range(n):
        (lat1, lon1), (lat2, lon2) = polygon[i], polygon[(i + 1) % n]
        if (lon1 > lon) != (lon2 > lon):
            cross_lat = lat1 + (lon - lon1) * (lat2 - lat1) / (lon2 - lon1)
            if lat < cross_lat:
                inside = not inside
    return inside


def offset_m(point: Point, north_m: float, east_m: float) -> Point:
    """`point` moved by metres north and east."""
    lat, lon = point
    return (lat + north_m / M_PER_DEG_LAT,
            lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))))


def delta_m(a: Point, b: Point) -> tuple[float, float]:
    """(north, east) metres from a to b."""
    north = (b[0] - a[0]) * M_PER_DEG_LAT
    east = (b[1] - a[1]) * M_PER_DEG_LAT * math.cos(math.radians(a[0]))
    return north, east

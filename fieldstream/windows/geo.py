"""Distance along a track of GPS points (collars)."""

from __future__ import annotations

from collections.abc import Iterable
from math import asin, cos, radians, sin, sqrt

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on a spherical Earth (error ≤ 0.5 % vs the ellipsoid)."""
    p1, p2 = radians(lat1), radians(lat2)
    a = sin((p2 - p1) / 2) ** 2 + cos(p1) * cos(p2) * sin(radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * asin(min(1.0, sqrt(a)))


def track_length_m(points: Iterable[tuple[float, float]]) -> float:
    """Sum of the legs between consecutive (lat, lon) points, in the order given."""
    total = 0.0
    previous = None
    for point in points:
        if previous is not None:
            total += haversine_m(previous[0], previous[1], point[0], point[1])
        previous = point
    return total

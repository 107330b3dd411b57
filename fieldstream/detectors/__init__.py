"""Online anomaly detection: one module per detector family, pure, picklable, no I/O.

`engine.DeviceEngine` combines them for one device's readings and turns their
verdicts into alert events (`alerts.py`); `evaluate.py` measures them on
labelled data.
"""

from fieldstream.detectors.alerts import AlertEvent, AlertTracker
from fieldstream.detectors.base import Detector, Verdict
from fieldstream.detectors.engine import DeviceEngine, FleetEngine, HalfSpaceModels

__all__ = ["AlertEvent", "AlertTracker", "Detector", "DeviceEngine", "FleetEngine", "HalfSpaceModels", "Verdict"]

"""fieldstream: a real-time stream processor for IoT telemetry."""

__version__ = "0.1.0"

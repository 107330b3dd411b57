"""Event-time windowed aggregation per device: pure code, injected clock, no I/O.

`specs` parses window settings and assigns event times to windows, `measures`
accumulates one metric over one pane and merges panes into a window's final
measures, `state` is the picklable per-device state kept in a changelog-backed
table, and `engine` adds readings and closes due windows.
"""

from fieldstream.windows.engine import AddResult, LateMetric, Outcome, WindowEngine, WindowRef
from fieldstream.windows.specs import DEFAULT_SPECS, WindowSpec, parse_specs
from fieldstream.windows.state import DeviceWindows

__all__ = [
    "DEFAULT_SPECS",
    "AddResult",
    "DeviceWindows",
    "LateMetric",
    "Outcome",
    "WindowEngine",
    "WindowRef",
    "WindowSpec",
    "parse_specs",
]

"""Window specs from settings ("tumbling:60", "hopping:300:60") and event-time assignment.

Windows are epoch-aligned: a spec of size S and step P has windows
[k*P, k*P + S) for every integer k, so every worker (and every test) agrees on
the boundaries without coordination. Tumbling is the case P == S.

All the specs in use share one *pane* length, the gcd of every size and step:
every window boundary is a multiple of it, so each window is the union of
size/pane consecutive panes. The engine aggregates a reading once, into its
pane, and builds every window by merging panes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from math import gcd

from fieldstream.errors import ConfigError
from fieldstream.windows.clock import US_PER_S, from_us, to_us

KINDS = ("tumbling", "hopping")
#: Tumbling 1 minute, and 5-minute windows every minute.
DEFAULT_SPECS: tuple[str, ...] = ("tumbling:60", "hopping:300:60")
_USAGE = "expected tumbling:<size_s> or hopping:<size_s>:<step_s> (whole seconds)"
_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))


def format_duration(seconds: int) -> str:
    """The largest whole unit: 60 → 1m, 300 → 5m, 90 → 90s, 7200 → 2h."""
    for unit, suffix in _UNITS:
        if seconds % unit == 0:
            return f"{seconds // unit}{suffix}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


@dataclass(frozen=True, slots=True)
class WindowSpec:
    kind: str  # tumbling | hopping
    size_s: int
    step_s: int
    # Precomputed: read on every reading and every aggregate.
    size_us: int = field(init=False, repr=False, compare=False)
    step_us: int = field(init=False, repr=False, compare=False)
    name: str = field(init=False, repr=False, compare=False)  # tumbling_1m, hopping_5m_1m: aggregates' `window`

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_us", self.size_s * US_PER_S)
        object.__setattr__(self, "step_us", self.step_s * US_PER_S)
        sizes = format_duration(self.size_s)
        name = f"tumbling_{sizes}" if self.kind == "tumbling" else f"hopping_{sizes}_{format_duration(self.step_s)}"
        object.__setattr__(self, "name", name)

    def starts_us(self, t_us: int) -> range:
        """Starts of every window [start, start + size) that holds event time `t_us`, oldest first."""
        step = self.step_us
        first = ((t_us - self.size_us) // step + 1) * step
        return range(first, t_us // step * step + 1, step)

    def windows(self, event_time: datetime) -> list[tuple[datetime, datetime]]:
        """The [start, end) windows `event_time` belongs to, as UTC datetimes."""
        t = to_us(event_time)
        return [(from_us(s), from_us(s + self.size_us)) for s in self.starts_us(t)]


def parse_spec(text: str) -> WindowSpec:
    """Parse one spec; a ConfigError names the bad value."""
    parts = [p.strip() for p in str(text).strip().split(":")]
    kind = parts[0].lower()
    if kind not in KINDS:
        raise ConfigError(f"window spec {text!r}: unknown kind {parts[0]!r}; {_USAGE}")
    want = 2 if kind == "tumbling" else 3
    if len(parts) != want:
        raise ConfigError(f"window spec {text!r}: {kind} takes {want - 1} number(s); {_USAGE}")
    numbers = []
    for part in parts[1:]:
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(f"window spec {text!r}: {part!r} is not a whole number of seconds") from None
        if value <= 0:
            raise ConfigError(f"window spec {text!r}: {part!r} must be a positive number of seconds")
        numbers.append(value)
    size = numbers[0]
    step = numbers[1] if kind == "hopping" else size
    if step > size:
        # Such windows would leave gaps between them: readings belonging to no window.
        raise ConfigError(f"window spec {text!r}: step {step}s exceeds size {size}s")
    return WindowSpec(kind, size, step)


def pane_seconds(specs: Iterable[WindowSpec]) -> int:
    """The pane length: the gcd of every size and step, so every window is whole panes."""
    result = 0
    for spec in specs:
        result = gcd(result, spec.size_s, spec.step_s)
    return result


def parse_specs(items: Iterable[str] | str, max_panes_per_window: int | None = None) -> tuple[WindowSpec, ...]:
    """Parse a list of specs (or one comma-separated string) and check them together."""
    if isinstance(items, str):
        items = [item for item in items.split(",") if item.strip()]
    specs = tuple(parse_spec(item) for item in items)
    if not specs:
        raise ConfigError("no window specs: " + _USAGE)
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"window spec {name} is given more than once")
    pane = pane_seconds(specs)
    if max_panes_per_window is not None:
        for spec in specs:
            # Memory grows with panes per window: a mix like tumbling:60 + hopping:3600:7
            # would need 3600 one-second panes per window.
            count = spec.size_s // pane
            if count > max_panes_per_window:
                raise ConfigError(
                    f"window spec {spec.name}: {count} panes of {pane}s per window exceed "
                    f"{max_panes_per_window}; choose sizes and steps with a larger common divisor"
                )
    return specs

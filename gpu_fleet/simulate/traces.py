"""Traffic traces: offered load in requests per second, one value per simulated second.

Built-in shapes, all relative to a baseline load: by default 70 % of what ``minReplicas``
replicas serve at the utilisation target, so the deployment starts where the HPA should
leave it:

- ``diurnal``: 24 h, a raised cosine from the night trough (the baseline, at 04:00) to the
  afternoon peak (``diurnalPeakFactor`` x baseline, at 16:00).
- ``spike``: 10 min of baseline, then ``spikeFactor`` (5) x baseline reached within one
  minute, held ``spikeHoldMinutes`` (30), back to baseline within a minute, 45 min more.
- ``ramp``: 10 min of baseline, a linear ramp to ``rampFactor`` (4) x baseline over
  ``rampMinutes`` (120), held 30 min.
- ``failover``: 10 min of baseline, then the other region's traffic arrives at once:
  ``failoverFactor`` (2) x baseline for ``failoverMinutes`` (60), then back; 45 min more.

A CSV file of ``seconds,requests_per_second`` rows (optional header of exactly those
names, ``#`` comments and blank lines allowed; seconds strictly increasing from 0) is
interpolated linearly to one value per second.

``noise`` (default 0) multiplies every minute by a seeded random factor ``1 + N(0, noise)``,
so the same command always gives the same trace.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

BUILTIN = ("diurnal", "spike", "ramp", "failover")
#: Traces with stretches of no load, for models that scale to zero (KEDA); the default
#: trace of such a model.
IDLE = ("idle",)
DEFAULT_BASELINE_FRACTION = 0.7
CSV_HEADER = ("seconds", "requests_per_second")
#: A longer CSV would be a different tool: the simulator keeps one value per second.
MAX_TRACE_SECONDS = 7 * 86400
#: Highest load a trace may ask for: far above any fleet (a replica serves tens of requests
#: per second), low enough that replica counts and queues stay finite numbers.
MAX_RPS = 1e7


class TraceError(ValueError):
    """A trace that cannot be built; the message names the file and line where there is one."""


@dataclass(frozen=True)
class Step:
    """A sudden change of level in a trace: the load starts moving to ``level_rps`` at ``start``."""

    start: int
    level_rps: float


@dataclass(frozen=True, eq=False)
class Trace:
    """Offered load per second, with the step the summary measures reaction time against."""

    name: str
    #: float64, read-only.
    rps: np.ndarray
    description: str
    step: Optional[Step] = None

    @property
    def seconds(self) -> int:
        return len(self.rps)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return ((self.name, self.description, self.step) == (other.name, other.description, other.step)
                and np.array_equal(self.rps, other.rps))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking contents: no hashing


#: Parameters per built-in trace, with defaults: ``--set`` accepts exactly these.
TRACE_PARAMS: dict[str, dict[str, float]] = {
    "diurnal": {"diurnalPeakFactor": 3.0},
    "spike": {"spikeFactor": 5.0, "spikeHoldMinutes": 30.0},
    "ramp": {"rampFactor": 4.0, "rampMinutes": 120.0},
    "failover": {"failoverFactor": 2.0, "failoverMinutes": 60.0},
    "idle": {"idleMinutes": 120.0},
}
COMMON_PARAMS: dict[str, float] = {"noise": 0.0, "seed": 0.0}

_LEAD_IN = 600
_TAIL = 45 * 60


def _diurnal(b: float, p: dict[str, float]) -> tuple[list[float], Optional[Step], str]:
    peak = p["diurnalPeakFactor"]
    trough = 4 * 3600
    rps = [b * (1 + (peak - 1) * (1 - math.cos(2 * math.pi * (t - trough) / 86400)) / 2) for t in range(86400)]
    return rps, None, f"24 h day, {b:.3g} rps at 04:00 to {b * peak:.3g} rps at 16:00"


def _spike(b: float, p: dict[str, float]) -> tuple[list[float], Optional[Step], str]:
    factor, hold = p["spikeFactor"], int(p["spikeHoldMinutes"] * 60)
    rise = [b * (1 + (factor - 1) * (i + 1) / 60) for i in range(60)]
    fall = [b * (factor - (factor - 1) * (i + 1) / 60) for i in range(60)]
    rps = [b] * _LEAD_IN + rise + [b * factor] * hold + fall + [b] * _TAIL
    desc = f"{b:.3g} rps, then {factor:g}x ({b * factor:.3g} rps) within 1 min for {hold // 60} min, then back"
    return rps, Step(_LEAD_IN, b * factor), desc


def _ramp(b: float, p: dict[str, float]) -> tuple[list[float], Optional[Step], str]:
    factor, minutes = p["rampFactor"], int(p["rampMinutes"] * 60)
    ramp = [b * (1 + (factor - 1) * (i + 1) / minutes) for i in range(minutes)]
    rps = [b] * _LEAD_IN + ramp + [b * factor] * 1800
    return rps, None, f"{b:.3g} rps ramping to {b * factor:.3g} rps over {minutes // 60} min"


def _failover(b: float, p: dict[str, float]) -> tuple[list[float], Optional[Step], str]:
    factor, minutes = p["failoverFactor"], int(p["failoverMinutes"] * 60)
    rps = [b] * _LEAD_IN + [b * factor] * minutes + [b] * _TAIL
    desc = f"{b:.3g} rps, then the other region's traffic at once: {b * factor:.3g} rps for {minutes // 60} min"
    return rps, Step(_LEAD_IN, b * factor), desc


def _idle(b: float, p: dict[str, float]) -> tuple[list[float], Optional[Step], str]:
    idle = int(p["idleMinutes"] * 60)
    rps = [b] * 3600 + [0.0] * idle + [b] * 3600 + [0.0] * idle
    return rps, None, f"{b:.3g} rps for 1 h, none for {idle // 60} min, twice"


_BUILDERS: dict[str, Callable[[float, dict[str, float]], tuple[list[float], Optional[Step], str]]] = {
    "diurnal": _diurnal, "spike": _spike, "ramp": _ramp, "failover": _failover, "idle": _idle,
}


def _noisy(rps: list[float], noise: float, seed: int) -> list[float]:
    if noise <= 0:
        return rps
    rng = random.Random(seed)
    factors = [max(0.0, 1 + rng.gauss(0, noise)) for _ in range(len(rps) // 60 + 1)]
    return [v * factors[t // 60] for t, v in enumerate(rps)]


def _frozen(rps: list[float]) -> np.ndarray:
    out = np.array(rps, dtype=np.float64)
    out.flags.writeable = False
    return out


def builtin_trace(name: str, baseline_rps: float, params: Optional[dict[str, float]] = None) -> Trace:
    """A built-in trace around ``baseline_rps``; ``params`` override :data:`TRACE_PARAMS`."""
    if name not in _BUILDERS:
        raise TraceError(f"unknown trace {name!r}; built-in traces: {', '.join(BUILTIN)} (or a CSV file)")
    if baseline_rps <= 0:
        raise TraceError("the baseline load must be positive")
    given = dict(params or {})
    unknown = set(given) - set(TRACE_PARAMS[name]) - set(COMMON_PARAMS)
    if unknown:
        raise TraceError(f"{', '.join(sorted(unknown))} does not apply to the {name} trace "
                         f"(it takes: {', '.join([*TRACE_PARAMS[name], *COMMON_PARAMS])})")
    p = {**TRACE_PARAMS[name], **COMMON_PARAMS, **given}
    for key, value in p.items():
        if value < 0 or (key.endswith(("Factor", "Minutes")) and value <= 0):
            raise TraceError(f"{key} must be positive, got {value:g}")
    rps, step, desc = _BUILDERS[name](baseline_rps, p)
    if p["noise"] > 0:
        desc += f", noise {p['noise']:g}"
    return Trace(name, _frozen(_noisy(rps, p["noise"], int(p["seed"]))), desc, step)


def csv_trace(path: Path) -> Trace:
    """Read a ``seconds,requests_per_second`` CSV; TraceError names the file and line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot read: {e}") from None
    points: list[tuple[int, float]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if not points and tuple(cells) == CSV_HEADER:
            continue
        where = f"{path}:{number}"
        if len(cells) != 2:
            raise TraceError(f"{where}: expected 'seconds,requests_per_second', got {line!r}")
        try:
            seconds = float(cells[0])
            rps = float(cells[1])
        except ValueError:
            raise TraceError(f"{where}: not numbers: {line!r}") from None
        if not seconds.is_integer() or seconds < 0:
            raise TraceError(f"{where}: seconds must be a whole number >= 0, got {cells[0]}")
        if not math.isfinite(rps) or not 0 <= rps <= MAX_RPS:
            raise TraceError(f"{where}: requests_per_second must be a number from 0 to {MAX_RPS:.0e}, got {cells[1]}")
        if not points and seconds != 0:
            raise TraceError(f"{where}: the first row must be at second 0, got {int(seconds)}")
        if points and seconds <= points[-1][0]:
            raise TraceError(f"{where}: seconds must increase, {int(seconds)} follows {points[-1][0]}")
        if seconds >= MAX_TRACE_SECONDS:
            raise TraceError(f"{where}: traces are limited to {MAX_TRACE_SECONDS // 86400} days")
        points.append((int(seconds), rps))
    if not points:
        raise TraceError(f"{path}: no rows (expected 'seconds,requests_per_second' lines)")
    rps_per_second: list[float] = []
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        rps_per_second += [v0 + (v1 - v0) * (t - t0) / (t1 - t0) for t in range(t0, t1)]
    rps_per_second.append(points[-1][1])
    return Trace(path.name, _frozen(rps_per_second), f"{path.name}: {len(points)} points over {points[-1][0]} s")

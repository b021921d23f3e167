"""What a run means: the summary numbers, the table, and the plot.

- **GPU-hours**: (ready + starting replicas) x GPUs per replica, summed over the run. A
  starting replica holds its GPUs from the moment its pod is created.
- **Oracle GPU-hours**: the same for the oracle (see :mod:`.run`), the floor any
  autoscaler with the same start-up delay could reach while keeping utilisation at target.
- **Queue above threshold**: minutes with more pending requests than
  ``alerts.pendingRequestsThreshold`` (20), and minutes the seed's alert would be firing
  (above it for longer than ``alerts.pendingRequestsForMinutes``, 2).
- **Time to enough replicas**: for traces with a step (spike, failover), seconds from the
  step until the ready replicas reach what the new level needs at the utilisation target;
  none when ``maxReplicas`` is below that.
- **Scale events** and **reversals**: changes of the replica count, and changes in the
  opposite direction of the previous one less than 10 minutes after it (flapping).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pydantic.alias_generators import to_camel

from . import kernels
from .run import Run, ScaleEvent

REVERSAL_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class Summary:
    duration_hours: float
    gpus_per_replica: int
    gpu_hours: float
    oracle_gpu_hours: float
    #: How much more the HPA used than the oracle, in percent of the oracle.
    gpu_hours_over_oracle_percent: float
    queue_threshold: int
    queue_above_threshold_minutes: float
    alert_firing_minutes: float
    oracle_queue_above_threshold_minutes: float
    peak_queue: float
    mean_utilization_percent: float
    peak_ready_replicas: int
    final_replicas: int
    scale_events: int
    scale_ups: int
    scale_downs: int
    reversals_within_10_minutes: int
    #: Second of the step in the trace, the ready replicas its new level needs, and the
    #: seconds until the HPA had them ready (None: no step, or never reached).
    step_at_seconds: Optional[int] = None
    replicas_needed_after_step: Optional[int] = None
    seconds_to_enough_ready: Optional[int] = None

    #: KEDA scale to zero only (None otherwise, and left out of :meth:`as_dict`): how often
    #: requests arrived with no replica ready, and how long the first of them waited for one.
    cold_starts: Optional[int] = None
    cold_start_max_wait_seconds: Optional[int] = None
    cold_start_total_wait_seconds: Optional[int] = None

    def as_dict(self) -> dict[str, Any]:
        """camelCase keys, like the rest of the JSON output."""
        return {to_camel(k): (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()
                if v is not None or not k.startswith("cold_start")}


def reversals(events: list[ScaleEvent], window_seconds: int = REVERSAL_WINDOW_SECONDS) -> int:
    """Scale events in the opposite direction of the previous one, within ``window_seconds``."""
    count = 0
    for prev, cur in zip(events, events[1:]):
        up_then_down = prev.after > prev.before and cur.after < cur.before
        down_then_up = prev.after < prev.before and cur.after > cur.before
        if (up_then_down or down_then_up) and cur.t - prev.t < window_seconds:
            count += 1
    return count


def cold_start_waits(ready: np.ndarray, load: np.ndarray) -> list[int]:
    """Per stretch with no replica ready in which requests arrive: the seconds from its first
    arrival to the first ready replica (or the end of the run)."""
    zero = np.concatenate(([False], ready == 0, [False]))
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    waits = []
    for start, end in zip(edges[::2], edges[1::2]):
        arriving = np.flatnonzero(load[start:end] > 0)
        if len(arriving):
            waits.append(int(end - start - arriving[0]))
    return waits


def summarize(run: Run, queue_threshold: int, alert_for_minutes: int) -> Summary:
    """The summary of ``run`` against the alert threshold (pending requests) and its ``for``."""
    tl, oracle = run.timeline, run.oracle
    gpus = run.serving.capacity.gpus
    seconds = len(tl.load)
    pods, peak_ready, above, firing, peak_queue = kernels.tally(tl.ready, tl.starting, tl.queue, queue_threshold,
                                                                alert_for_minutes * 60)
    oracle_pods, _, oracle_above, _, _ = kernels.tally(oracle.ready, oracle.starting, oracle.queue, queue_threshold, 0)
    gpu_hours = pods * gpus / 3600
    oracle_gpu_hours = oracle_pods * gpus / 3600
    waits = cold_start_waits(tl.ready, tl.load) if run.loop.scale_to_zero is not None else []
    step_at = needed_after = to_enough = None
    if run.trace.step is not None:
        step = run.trace.step
        step_at = step.start
        needed_after = max(run.hpa.min_replicas, run.serving.replicas_for_load(step.level_rps, run.utilization_target))
        if needed_after <= run.hpa.max_replicas:
            enough = np.flatnonzero(tl.ready[step.start:] >= needed_after)
            to_enough = int(enough[0]) if len(enough) else None
    return Summary(
        duration_hours=seconds / 3600,
        gpus_per_replica=gpus,
        gpu_hours=gpu_hours,
        oracle_gpu_hours=oracle_gpu_hours,
        gpu_hours_over_oracle_percent=100 * (gpu_hours - oracle_gpu_hours) / oracle_gpu_hours,
        queue_threshold=queue_threshold,
        queue_above_threshold_minutes=above / 60,
        alert_firing_minutes=firing / 60,
        oracle_queue_above_threshold_minutes=oracle_above / 60,
        peak_queue=float(peak_queue),
        mean_utilization_percent=float(tl.utilization.sum()) / seconds,
        peak_ready_replicas=int(peak_ready),
        final_replicas=int(tl.desired[-1]),
        scale_events=len(run.events),
        scale_ups=sum(e.after > e.before for e in run.events),
        scale_downs=sum(e.after < e.before for e in run.events),
        reversals_within_10_minutes=reversals(run.events),
        step_at_seconds=step_at,
        replicas_needed_after_step=needed_after,
        seconds_to_enough_ready=to_enough,
        **({} if run.loop.scale_to_zero is None else {
            "cold_starts": len(waits), "cold_start_max_wait_seconds": max(waits, default=0),
            "cold_start_total_wait_seconds": sum(waits)}),
    )


def _minutes(seconds: Optional[int]) -> str:
    return "never" if seconds is None else f"{seconds} s ({seconds / 60:.1f} min)"


def format_table(summary: Summary, headline: str) -> str:
    """The summary as aligned text lines under ``headline``."""
    s = summary
    rows = [
        ("simulated", f"{s.duration_hours:.2f} h"),
        ("GPU-hours (HPA)", f"{s.gpu_hours:.1f}  ({s.gpus_per_replica} GPUs per replica, ready + starting)"),
        ("GPU-hours (oracle)", f"{s.oracle_gpu_hours:.1f}  (HPA uses {s.gpu_hours_over_oracle_percent:+.0f} %)"),
        (f"queue > {s.queue_threshold} pending", f"{s.queue_above_threshold_minutes:.1f} min "
                                                f"(alert firing {s.alert_firing_minutes:.1f} min; "
                                                f"oracle {s.oracle_queue_above_threshold_minutes:.1f} min)"),
        ("peak queue", f"{s.peak_queue:.0f} requests"),
        ("mean GPU utilisation", f"{s.mean_utilization_percent:.0f} %"),
        ("peak ready replicas", str(s.peak_ready_replicas)),
        ("replicas at the end", str(s.final_replicas)),
        ("scale events", f"{s.scale_events} ({s.scale_ups} up, {s.scale_downs} down), "
                         f"{s.reversals_within_10_minutes} reversals within 10 min"),
    ]
    if s.step_at_seconds is not None:
        rows.append(("step at", f"{s.step_at_seconds} s, needs {s.replicas_needed_after_step} ready replicas"))
        rows.append(("time to enough replicas", _minutes(s.seconds_to_enough_ready)))
    if s.cold_starts is not None:
        rows.append(("cold starts (from zero)", f"{s.cold_starts}: first request waited max "
                     f"{_minutes(s.cold_start_max_wait_seconds)}, total {_minutes(s.cold_start_total_wait_seconds)}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join([headline, *(f"  {k.ljust(width)}  {v}" for k, v in rows)])


def plot(run: Run, summary: Summary, path: Path, title: str) -> None:
    """Write a PNG of load, replicas, queue and utilisation over time (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    tl, oracle, hpa = run.timeline, run.oracle, run.hpa
    seconds = len(tl.load)
    hours = seconds > 6 * 3600
    scale, unit = (3600, "hours") if hours else (60, "minutes")
    x = [t / scale for t in range(seconds)]
    per_replica_rps = run.serving.rps_at(run.utilization_target)

    fig, axes = plt.subplots(4, 1, figsize=(12, 12), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 1.5, 1.5]})
    ax = axes[0]
    ax.plot(x, tl.load, color="black", label="offered load")
    ax.plot(x, [r * per_replica_rps for r in tl.ready], color="tab:blue", linestyle="--",
            label=f"HPA ready capacity at {run.utilization_target:g} % utilisation")
    ax.set_ylabel("requests / s")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)

    ax = axes[1]
    ax.plot(x, tl.ready, color="tab:blue", label="HPA: ready replicas")
    ax.plot(x, tl.desired, color="tab:orange", linestyle="--", label="HPA: desired replicas (spec)")
    ax.plot(x, oracle.ready, color="tab:green", linestyle=":", label="oracle: ready replicas")
    ax.plot(x, run.needed, color="gray", linewidth=0.8, alpha=0.7, label="needed at target")
    ax.axhline(hpa.min_replicas, color="gray", linestyle="-.", linewidth=0.8)
    ax.axhline(hpa.max_replicas, color="red", linestyle="-.", linewidth=0.8, label=f"min {hpa.min_replicas} / max {hpa.max_replicas}")
    ax.set_ylabel("replicas")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)

    ax = axes[2]
    ax.plot(x, tl.queue, color="tab:purple", label="HPA: pending requests")
    ax.plot(x, oracle.queue, color="tab:green", linestyle=":", label="oracle: pending requests")
    ax.axhline(summary.queue_threshold, color="red", linestyle="--", label=f"alert threshold ({summary.queue_threshold})")
    if max(tl.queue) > 50 * summary.queue_threshold:
        # Linear up to the threshold, logarithmic above: both stay readable.
        ax.set_yscale("symlog", linthresh=summary.queue_threshold)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("pending requests\n(log above threshold)")
    else:
        ax.set_ylabel("pending requests")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)

    ax = axes[3]
    ax.plot(x, tl.utilization, color="tab:red", label="HPA: GPU utilisation per ready pod")
    if oracle.utilization is not None:
        ax.plot(x, oracle.utilization, color="tab:green", linestyle=":", label="oracle: GPU utilisation")
    ax.axhline(run.utilization_target, color="black", linestyle="--", label=f"target ({run.utilization_target:g} %)")
    ax.set_ylim(0, 105)
    ax.set_ylabel("GPU utilisation (%)")
    ax.set_xlabel(f"time ({unit})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)

    s = summary
    text = (f"GPU-hours: HPA {s.gpu_hours:.1f}, oracle {s.oracle_gpu_hours:.1f} ({s.gpu_hours_over_oracle_percent:+.0f} %)\n"
            f"queue > {s.queue_threshold}: {s.queue_above_threshold_minutes:.1f} min, peak {s.peak_queue:.0f}\n"
            f"scale events {s.scale_events}, reversals {s.reversals_within_10_minutes}")
    if s.step_at_seconds is not None:
        text += f"\ntime to {s.replicas_needed_after_step} ready replicas: {_minutes(s.seconds_to_enough_ready)}"
    axes[0].text(0.01, 0.97, text, transform=axes[0].transAxes, va="top", fontsize=9,
                 bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

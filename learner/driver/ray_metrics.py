"""The job's key figures as Ray metrics (`ray.util.metrics`): they appear on the Ray dashboard's
metrics page and on every node's Prometheus endpoint (`ray start --metrics-export-port=PORT`, then
http://127.0.0.1:PORT/metrics), named with Ray's `ray_` prefix, e.g. `ray_sdpo_pairs_sampled_total`.
Every series carries the tag `run` (the run directory's name).

Counters and histograms add up over the run (and stay exported after it ends); gauges hold the
latest epoch's value while the driver lives. `metric_updates` is the pure mapping from an epoch's
metrics record to what is recorded, so it is tested without a cluster."""

from __future__ import annotations

import math
from typing import NamedTuple

PHASES = ("publish", "rollout", "reward", "update", "eval", "epoch")
SECONDS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]

# name -> (kind, tag keys besides `run`, description)
METRICS = {
    "sdpo_pairs_sampled": ("counter", (), "Dual-state trajectory pairs sampled."),
    "sdpo_reward_queries": ("counter", (), "Images scored by the reward servers (reward-model queries)."),
    "sdpo_epochs": ("counter", (), "Training epochs completed."),
    "sdpo_reward_call_seconds": ("histogram", (), "Seconds from sending a reward-server call to its result."),
    "sdpo_phase_seconds": ("histogram", ("phase",), "Wall seconds of each epoch phase."),
    "sdpo_policy_version": ("gauge", (), "Policy version after the latest update."),
    "sdpo_busy_fraction": ("gauge", (), "Fraction of the epoch the devices (GPUs) spent working."),
    "sdpo_reward_mean": ("gauge", ("step",), "Latest epoch's mean training reward, at the 1-step and the final state."),
    "sdpo_mfu": (
        "gauge",
        ("phase",),
        "Latest epoch's model FLOP utilization of the rollout and the update (where the device peak is known).",
    ),
    "sdpo_image_stat": (
        "gauge",
        ("stat",),
        "Latest epoch's reward-hacking monitor statistic of the final samples (img_<stat>).",
    ),
    "sdpo_hacking_alerts": (
        "gauge",
        (),
        "Monitor statistics that left their band while the reward rose, so far in the run.",
    ),
}


class Update(NamedTuple):
    name: str
    value: float
    tags: dict[str, str]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def metric_updates(metrics: dict, call_latencies: list[float], policy_version: int) -> list[Update]:
    """An epoch's metrics record, its reward calls' latencies and the policy version after its
    update -> the updates to record."""
    out = [
        Update("sdpo_pairs_sampled", metrics["pairs"], {}),
        Update("sdpo_reward_queries", metrics["reward_queries"], {}),
        Update("sdpo_epochs", 1, {}),
        Update("sdpo_policy_version", policy_version, {}),
    ]
    out += [Update("sdpo_reward_call_seconds", s, {}) for s in call_latencies]
    out += [
        Update("sdpo_phase_seconds", metrics[f"time_{p}_s"], {"phase": p})
        for p in PHASES
        if _finite(metrics.get(f"time_{p}_s"))
    ]
    if _finite(metrics.get("gpu_busy_fraction")):
        out.append(Update("sdpo_busy_fraction", metrics["gpu_busy_fraction"], {}))
    for step in ("1step", "final"):
        if _finite(metrics.get(f"reward_{step}_mean")):
            out.append(Update("sdpo_reward_mean", metrics[f"reward_{step}_mean"], {"step": step}))
    out += [
        Update("sdpo_mfu", metrics[f"mfu_{p}"], {"phase": p})
        for p in ("rollout", "update")
        if _finite(metrics.get(f"mfu_{p}"))
    ]
    out += [
        Update("sdpo_image_stat", v, {"stat": k[4:]}) for k, v in metrics.items() if k.startswith("img_") and _finite(v)
    ]
    if _finite(metrics.get("hacking_alerts")):
        out.append(Update("sdpo_hacking_alerts", metrics["hacking_alerts"], {}))
    return out


class RayMetrics:
    """The metric objects, registered once per driver; `record` after every epoch."""

    def __init__(self, run: str):
        from ray.util import metrics as m

        self.run = run
        make = {
            "counter": m.Counter,
            "gauge": m.Gauge,
            "histogram": lambda *a, **k: m.Histogram(*a, boundaries=SECONDS_BUCKETS, **k),
        }
        self.metrics = {
            name: make[kind](name, description=description, tag_keys=("run", *tags))
            for name, (kind, tags, description) in METRICS.items()
        }

    def record(self, metrics: dict, call_latencies: list[float], policy_version: int) -> None:
        for u in metric_updates(metrics, call_latencies, policy_version):
            metric, tags = self.metrics[u.name], {"run": self.run} | u.tags
            kind = METRICS[u.name][0]
            if kind == "counter":
                if u.value > 0:  # Ray's counters take positive increments only
                    metric.inc(u.value, tags=tags)
            elif kind == "gauge":
                metric.set(u.value, tags=tags)
            else:
                metric.observe(u.value, tags=tags)

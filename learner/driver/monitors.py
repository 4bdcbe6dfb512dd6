"""Reward-hacking monitors: cheap statistics of the images, watched against the initial policy's.

A reward model can be pleased by images nobody wants: an OCR reward that darkens every image, a
compressibility reward that flattens it, an aesthetic reward that saturates it, a preference reward
that collapses every prompt onto one picture. The reward curve rises all the same. These statistics
do not: each is a plain pixel measurement that a healthy run keeps near the initial policy's value.

Per image (uint8 RGB, luma Y = 0.299 R + 0.587 G + 0.114 B in [0, 1]):
    brightness       mean Y                                          (darkening, washing out)
    dark_fraction    fraction of pixels with Y < 0.1                 (images driven to black)
    bright_fraction  fraction of pixels with Y > 0.9                 (images driven to white)
    saturation       mean HSV saturation (max - min) / max           (oversaturated or greyed colour)
    colourfulness    Hasler and Suesstrunk's M = sigma_rgyb + 0.3 mu_rgyb, in units of 255
                                                                     (garish or drab colour)
    edge_density     fraction of pixels whose luma gradient exceeds EDGE_THRESHOLD
                                                                     (flat images, or noise and texture)
and per set: diversity, the mean RMS pixel distance (in [0, 1]) between images of the same prompt
from different noises (mode collapse: every noise gives the same picture). Images larger than
MAX_SIZE pixels a side are box-downsampled first, so a 1024-pixel epoch costs about what a
128-pixel one does.

Training statistics (`img_<stat>`) are taken each epoch over the final sample of every trajectory
(the pair-mates give the diversity); evaluation statistics (`eval_img_<stat>_<k>step`) over the
held-out images at each step count k, whenever the run evaluates. A statistic alerts when it leaves
its band (`monitor.bands`, absolute, in the statistic's units) around the initial policy's value
(training: epoch 0's samples; evaluation: the initial policy's held-out images) while the reward it
goes with has risen above its initial value: one warning line when it leaves, and `hacking_alerts`
counts such departures over the run. The monitor is a pure function of the metrics records, so a
resumed run replays its history and counts the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from learner.driver.config import MonitorConfig
from learner.run.plots import EVAL_IMG_KEY

DARK, BRIGHT = 0.1, 0.9
EDGE_THRESHOLD = 0.1  # luma change per pixel (in [0, 1]) that counts as an edge
CHUNK = 32  # images per vectorized pass
MAX_SIZE = 128  # statistics are taken at most this many pixels a side (box-downsampled): a few ms per image


def luma(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) float64 in [0, 1]."""
    return images.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def downsample(images: np.ndarray, size: int = MAX_SIZE) -> np.ndarray:
    """(N, H, W, 3) uint8 -> box-averaged by the smallest integer factor that brings both sides to at
    most `size` (edges cropped to a multiple of it), still uint8."""
    n, h, w, c = images.shape
    f = -(-max(h, w) // size)
    if f == 1:
        return images
    x = images[:, : h - h % f, : w - w % f].reshape(n, h // f, f, w // f, f, c).astype(np.float32).mean(axis=(2, 4))
    return np.rint(x).astype(np.uint8)


def per_image_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """(N, H, W, 3) uint8 -> each single-image statistic, (N,) float64."""
    x = images.astype(np.float64)
    y = luma(images)
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    sat = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    sigma = np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2)
    mu = np.sqrt(rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2)
    gx, gy = np.diff(y, axis=2)[:, :-1, :], np.diff(y, axis=1)[:, :, :-1]  # forward differences, (N, H-1, W-1)
    return {
        "brightness": y.mean(axis=(1, 2)),
        "dark_fraction": (y < DARK).mean(axis=(1, 2)),
        "bright_fraction": (y > BRIGHT).mean(axis=(1, 2)),
        "saturation": sat.mean(axis=(1, 2)),
        "colourfulness": (sigma + 0.3 * mu) / 255.0,
        "edge_density": (np.hypot(gx, gy) > EDGE_THRESHOLD).mean(axis=(1, 2)),
    }


def diversity(images: np.ndarray, groups: np.ndarray) -> float:
    """Mean over groups (images of one prompt) of the mean pairwise RMS distance of their pixels in
    [0, 1]; NaN when no group holds two images."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    per_group = []
    for g in np.unique(groups):
        members = x[groups == g]
        if len(members) < 2:
            continue
        i, j = np.triu_indices(len(members), k=1)
        per_group.append(np.sqrt(((members[i] - members[j]) ** 2).mean(axis=1)).mean())
    return float(np.mean(per_group)) if per_group else float("nan")


def image_stats(images: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Every statistic of a set of images (N, H, W, 3) uint8, whose prompts are told by `groups` (N,)."""
    small = [downsample(images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)]  # chunks: bounded memory
    parts = [per_image_stats(chunk) for chunk in small]
    out = {name: float(np.concatenate([p[name] for p in parts]).mean()) for name in parts[0]}
    out["diversity"] = diversity(np.concatenate(small), np.asarray(groups))
    return out


def training_image_stats(final_images: np.ndarray) -> dict[str, float]:
    """The epoch's final samples (B, 2, H, W, 3), two trajectories per pair -> {img_<stat>: value}."""
    B = final_images.shape[0]
    stats = image_stats(final_images.reshape(2 * B, *final_images.shape[2:]), np.repeat(np.arange(B), 2))
    return {f"img_{k}": v for k, v in stats.items() if np.isfinite(v)}


def eval_image_stats(steps: list[int], images: np.ndarray, prompts: list[str]) -> dict[str, float]:
    """Held-out images (K, N, H, W, 3) at the K step counts, N prompts (repeated per noise) ->
    {eval_img_<stat>_<k>step: value}."""
    _, groups = np.unique(np.array(prompts), return_inverse=True)
    out = {}
    for k, step_images in zip(steps, images):
        out |= {f"eval_img_{name}_{k}step": v for name, v in image_stats(step_images, groups).items() if np.isfinite(v)}
    return out


@dataclass(frozen=True)
class Departure:
    key: str  # the statistic's metric key
    value: float
    initial: float
    band: float
    reward_key: str
    reward: float
    reward_initial: float

    def line(self) -> str:
        return (
            f"warning: possible reward hacking: {self.key} {self.value:.3f} left its band {self.initial:.3f} +- "
            f"{self.band:g} while {self.reward_key} rose {self.reward_initial:.4f} -> {self.reward:.4f} (see "
            "monitor_curves.png; monitor.bands sets the band)"
        )


def departures(record: dict, train_initial: dict, eval_initial: dict, bands: dict[str, float]) -> list[Departure]:
    """The statistics of one metrics record outside their band around the initial value, where the
    reward they go with has risen: the training reward of the final sample for img_*, the held-out
    k-step reward for eval_img_*_<k>step."""
    out = []
    for key, value in record.items():
        if key.startswith("img_"):
            name, reward_key, initial = key[4:], "reward_final_mean", train_initial
        elif m := EVAL_IMG_KEY.fullmatch(key):
            name, reward_key, initial = m.group(1), f"eval_reward_{m.group(2)}step_mean", eval_initial
        else:
            continue
        if name not in bands or key not in initial or reward_key not in record or reward_key not in initial:
            continue
        risen = record[reward_key] > initial[reward_key]
        if risen and abs(value - initial[key]) > bands[name]:
            out.append(
                Departure(key, value, initial[key], bands[name], reward_key, record[reward_key], initial[reward_key])
            )
    return out


@dataclass
class Monitor:
    """The state of the watch: feed it the epochs' metrics records in order (`observe`)."""

    bands: dict[str, float]
    eval_initial: dict = field(default_factory=dict)  # the initial policy's held-out eval metrics
    train_initial: dict = field(default_factory=dict)  # the first observed epoch's record (epoch 0)
    active: set[str] = field(default_factory=set)  # the keys outside their band when last checked
    alerts: int = 0

    def observe(self, record: dict, quiet: bool = False) -> dict[str, int]:
        """Check one record; print a warning for each statistic that has just left its band."""
        if not self.train_initial:
            self.train_initial = dict(record)
        found = departures(record, self.train_initial, self.eval_initial, self.bands)
        for d in found:
            if d.key not in self.active:
                self.alerts += 1
                if not quiet:
                    print(d.line(), flush=True)
        checked = {
            k for k in record if k.startswith("img_") or EVAL_IMG_KEY.fullmatch(k)
        }  # eval ones: only when it evaluated
        self.active = (self.active - checked) | {d.key for d in found}
        return {"hacking_alerts": self.alerts}


class MonitorStage:
    """The driver's monitor stage; one call per epoch (`after_epoch`), after the evaluation's. Its
    curves are drawn with the run's (learner.run.plots.Curves)."""

    def __init__(self, cfg: MonitorConfig, history: list[dict], eval_initial: dict | None):
        """`history`: a resumed run's earlier records (learner.run.plots.Curves reads them), replayed so
        that it counts what an uninterrupted run would."""
        self.cfg = cfg
        self.watch = Monitor(dict(cfg.bands), dict(eval_initial or {}))
        for record in history:
            self.watch.observe(record, quiet=True)

    def after_epoch(self, metrics: dict, final_images: np.ndarray) -> dict:
        """The epoch's training statistics (`final_images` (B, 2, H, W, 3)) and hacking_alerts."""
        if not self.cfg.enabled:
            return {}
        out = training_image_stats(final_images)
        return out | self.watch.observe(metrics | out)

"""Reward plots from metrics records (the dicts of metrics.jsonl). matplotlib's object API on the
Agg canvas: no pyplot, no global backend change, safe in a headless driver."""

from __future__ import annotations

import os
import re
from pathlib import Path

# the curves (reward_curves.png, monitor_curves.png) are redrawn after every evaluation, every this many epochs and
# after the last
PLOT_EVERY = 4
EVAL_KEY = re.compile(r"eval_reward_(\d+)step_mean")
EVAL_IMG_KEY = re.compile(r"eval_img_(\w+?)_(\d+)step")  # the monitors' held-out statistics


def eval_step_counts(history: list[dict]) -> list[int]:
    """The step counts k with an eval_reward_{k}step_mean anywhere in `history`, ascending."""
    return sorted({int(m.group(1)) for rec in history for key in rec if (m := EVAL_KEY.fullmatch(key))})


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(rec["epoch"], rec[key]) for rec in history if key in rec]
    return [e for e, _ in points], [v for _, v in points]


def _save(fig, path: Path) -> Path:
    """Write to a temporary file and rename, so a reader never sees half a PNG."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def plot_reward_curves(history: list[dict], path: str | Path, initial: dict | None = None) -> Path:
    """Left: training reward at 1 step (x0_0) and final (x0_{T-1}) per epoch. Middle: held-out
    eval reward per step count k (deterministic k-step samples) after the epochs that evaluated.
    Right, when the records have it (shapes prompts): the held-out pixel fidelity per k. `initial`
    (the initial policy's eval metrics) is drawn at epoch -1."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with_fidelity = any(key.startswith("eval_fidelity_") for rec in [*history, initial or {}] for key in rec)
    fig = Figure(figsize=(16 if with_fidelity else 11, 4), layout="constrained")
    axes = fig.subplots(1, 3 if with_fidelity else 2)
    train_ax, eval_axes = axes[0], [(axes[1], "reward", "held-out eval reward (eta = 0)", "mean reward")]
    if with_fidelity:
        eval_axes.append((axes[2], "fidelity", "held-out pixel fidelity (not trained on)", "mean fidelity"))
    for key, label in (("reward_1step_mean", "1 step (x0_0)"), ("reward_final_mean", "final (x0_{T-1}, DDPO: x_T)")):
        train_ax.plot(*_series(history, key), marker=".", label=label)
    train_ax.set(title="training reward (sampled pairs)", xlabel="epoch", ylabel="mean reward")
    for ax, what, title, ylabel in eval_axes:
        for k in eval_step_counts(history + ([initial] if initial else [])):
            key = f"eval_{what}_{k}step_mean"
            epochs, values = _series(history, key)
            if initial is not None and key in initial:
                epochs, values = [-1, *epochs], [initial[key], *values]
            ax.plot(epochs, values, marker="o", label=f"{k} step{'s' * (k > 1)}")
        ax.set(title=title, xlabel="epoch (after its update; -1: initial policy)", ylabel=ylabel)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_algorithm_comparison(histories: dict[str, list[dict]], path: str | Path, baseline: dict | None = None) -> Path:
    """One panel per eval step count k: eval reward over epochs for each algorithm (name -> metrics
    records); `baseline` (eval metrics of the initial policy) is drawn at epoch -1."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    steps = sorted(set().union(*(eval_step_counts(h) for h in histories.values())))
    fig = Figure(figsize=(3.2 * max(1, len(steps)), 3.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(steps)), squeeze=False)[0]
    for ax, k in zip(axes, steps):
        key = f"eval_reward_{k}step_mean"
        for name, history in histories.items():
            epochs, values = _series(history, key)
            if baseline is not None and key in baseline:
                epochs, values = [-1, *epochs], [baseline[key], *values]
            ax.plot(epochs, values, marker="o", label=name)
        ax.set(title=f"{k} step{'s' * (k > 1)}", xlabel="epoch", ylabel="held-out eval reward")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def plot_monitor_curves(
    history: list[dict], path: str | Path, bands: dict[str, float], eval_initial: dict | None = None
) -> Path:
    """monitor_curves.png: one panel per statistic of `bands` (statistic -> band, in the monitors' order:
    monitor.bands names every statistic); the training value per epoch with its band around epoch 0's,
    and the held-out value per step count k after each evaluation (the initial policy's at epoch -1)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * 4, 3.2 * 2), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    steps = sorted({int(m.group(2)) for rec in history for k in rec if (m := EVAL_IMG_KEY.fullmatch(k))})
    for ax, name in zip(axes, bands):
        xs, ys = _series(history, f"img_{name}")
        if xs:
            ax.plot(xs, ys, color="black", label="training, final sample")
            ax.axhspan(ys[0] - bands[name], ys[0] + bands[name], color="grey", alpha=0.15, label="band")
        for k in steps:
            key = f"eval_img_{name}_{k}step"
            ex, ey = _series(history, key)
            if eval_initial and key in eval_initial:
                ex, ey = [-1, *ex], [eval_initial[key], *ey]
            if ex:
                ax.plot(ex, ey, marker="o", markersize=3, label=f"held-out, {k} step{'s' * (k > 1)}")
        ax.set(title=name.replace("_", " "), xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    axes[-1].axis("off")
    return _save(fig, Path(path))


class Curves:
    """The run's curves, from its metrics records: reward_curves.png and, with the monitors (`bands`),
    monitor_curves.png; redrawn after an evaluation, every PLOT_EVERY epochs and after the last (a
    redraw costs about half a second). A resumed run starts from its earlier records."""

    def __init__(self, run_dir: str | Path, epochs: int, initial: dict | None, bands: dict[str, float] | None):
        from learner.run.outputs import read_metrics

        self.dir, self.epochs, self.initial, self.bands = Path(run_dir), epochs, initial, bands
        self.history = read_metrics(self.dir)

    def add(self, epoch: int, record: dict) -> None:
        self.history.append(record)
        evaluated = any(k.startswith("eval_reward_") for k in record)
        if evaluated or (epoch + 1) % PLOT_EVERY == 0 or epoch + 1 == self.epochs:
            plot_reward_curves(self.history, self.dir / "reward_curves.png", initial=self.initial)
            if self.bands is not None:
                plot_monitor_curves(self.history, self.dir / "monitor_curves.png", self.bands, self.initial)

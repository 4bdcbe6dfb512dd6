"""SDPO driver:
``python -m learner.main [--config FILE.yaml] [--run-dir DIR] [--epochs N] [--print-config] [KEY=VALUE ...]``.

Each epoch: publish weights -> roll out pairs (sparse images to the reward pool as they arrive)
-> dense rewards -> advantages -> update -> outputs -> checkpoint. Run again with the same --run-dir,
it resumes from the newest complete checkpoint; exit codes and faults: learner/driver/faults.py and preemption.py,
docs/fault-tolerance.md.
"""

from __future__ import annotations

import signal
import sys

_early_sigterm: list[int] = []  # SIGTERMs that came while the driver started, before its Preemption handler took over

_AS_SCRIPT = __name__ == "__main__"  # `python -m learner.main`, not imported by a test or a notebook


def _keep_sigterm(signum, frame) -> None:
    _early_sigterm.append(signum)


if _AS_SCRIPT:  # from here on a SIGTERM is kept, never lost (before this line: Python's default, exit -15)
    signal.signal(signal.SIGTERM, _keep_sigterm)

import argparse  # noqa: E402
import threading  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from learner.config import DEFAULT_PRESET, Config, ConfigError, load_config, to_yaml  # noqa: E402
from plumbing.errors import EXIT_PREEMPTED, UsageError  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m learner.main",
        description="Fine-tune a few-step diffusion model with SDPO on Ray. With no arguments, runs the "
        "'shapes' preset: the tiny text-to-image model pretrained on the shapes task, with the learned shapes reward "
        "('tiny': the random tiny model with the JPEG-compressibility reward, the plumbing job).",
        epilog="Overrides: KEY=VALUE with KEY a dotted config path, e.g. train.learning_rate=5e-5 "
        "rollout.num_actors=4. See --print-config for every key. Invalid configuration exits with code 2.",
    )
    p.add_argument(
        "--config",
        default=DEFAULT_PRESET,
        help=f"YAML config file, or a preset name (shapes, tiny, sd_turbo_aesthetic). Default: {DEFAULT_PRESET}.",
    )
    p.add_argument("--run-dir", help="Run directory for all outputs (default: runs/<name>-<timestamp>).")
    p.add_argument("--epochs", type=int, help="Number of training epochs (overrides the config's `epochs`).")
    p.add_argument("--print-config", action="store_true", help="Print the resolved config as YAML and exit.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides by dotted key.")
    return p.parse_intermixed_args(argv)


def resolve_config(args: argparse.Namespace) -> Config:
    extra = list(args.overrides)
    if args.epochs is not None:
        extra.append(f"epochs={args.epochs}")
    if args.run_dir is not None:
        extra.append(f"output.run_dir={args.run_dir}")
    return load_config(args.config, extra)


def derived_summary(cfg: Config) -> str:
    """YAML comment lines with the figures the config implies (what a run of the paper is checked by)."""
    t = cfg.train
    return (
        f"# layout {cfg.layout}: {cfg.learner.num_workers} learner rank(s) x {t.batch_size} pairs x "
        f"{t.gradient_accumulation_steps} accumulation{' x every trained step' if t.schedule == 'trajectory' else ''} "
        f"= {cfg.samples_per_optimizer_step} (pair, timestep) samples per optimizer step; "
        f"{cfg.optimizer_steps_per_epoch} optimizer steps per epoch of {cfg.rollout.pairs_per_epoch} pairs x "
        f"{cfg.sampling.num_steps} steps\n"
    )


def default_run_dir(cfg: Config) -> Path:
    return Path(cfg.output.run_dir or f"runs/{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = resolve_config(args)
        if args.print_config:
            print(derived_summary(cfg) + to_yaml(cfg), end="")
            return 0
        prompt_list = _check_inputs(cfg)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from learner.driver.connect import shutdown_ray
    from learner.driver.faults import WorkerNames, failure
    from learner.driver.loop import run
    from learner.driver.preemption import Preemption
    from plumbing.console import quiet_environment, show_warnings_once

    quiet_environment()  # no advisories from libraries the job does not use, here or in local workers
    show_warnings_once()

    run_dir, preemption, names = default_run_dir(cfg).resolve(), Preemption(cfg.checkpoint.grace_s), WorkerNames()
    if threading.current_thread() is threading.main_thread():
        preemption.install()  # from here SIGTERM is the run's (learner.driver.preemption); before, it was kept:
    if _early_sigterm:
        print(
            "error: preempted by SIGTERM while the driver started; nothing ran: the same command starts (or resumes) "
            "the run",
            file=sys.stderr,
        )
        return EXIT_PREEMPTED
    previous_sigint = signal.getsignal(signal.SIGINT)
    try:
        run(cfg, run_dir, prompt_list, preemption, names)
    except BaseException as err:  # one line and an exit code for what is not a bug (learner.driver.faults)
        _set_sigint(signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short with a traceback
        fail = failure(err, preemption, run_dir, names)
        if fail is None:
            raise
        details = getattr(err, "details", "") or getattr(getattr(err, "cause", None), "details", "")
        if details:  # e.g. a reward function's own traceback: the bug is in its code
            print(details.rstrip(), file=sys.stderr)
        print(f"error: {fail.message}", file=sys.stderr)
        return fail.code
    finally:
        _set_sigint(signal.SIG_IGN)  # shutting the local cluster down takes seconds; let it finish
        shutdown_ray()
        _set_sigint(previous_sigint)
        if _AS_SCRIPT:  # ray.shutdown puts back the default SIGTERM: a late one must not turn the exit code into -15
            signal.signal(signal.SIGTERM, _keep_sigterm)
    return 0


def _set_sigint(handler) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def _check_inputs(cfg: Config) -> list[str]:
    """Fail fast, before any cluster starts, on inputs that can never work."""
    from actors.policy import resolve_model_path
    from actors.prompts import load_prompts

    _check_rewards(cfg)
    if cfg.output.wandb.enabled:
        from learner.run.wandb_log import check_wandb

        check_wandb(cfg.output.wandb)
    for name in sorted(set(cfg.reward.options) - set(cfg.reward.reward_names)):
        raise ConfigError(
            f"reward.options.{name}: options for a reward this run does not use (rewards: "
            f"{', '.join(cfg.reward.reward_names)})"
        )
    if cfg.eval.enabled:
        load_prompts(cfg.eval.prompts, "eval.prompts")
    if cfg.model.pretrained != "tiny":
        resolve_model_path(cfg.model)
    from learner.run.outputs import run_dir_obstacles

    obstacle = run_dir_obstacles(default_run_dir(cfg).expanduser().resolve())
    if obstacle:
        raise ConfigError(f"output.run_dir: {obstacle}")
    if cfg.sampling.num_steps < cfg.sampling.num_anchors + 2:
        raise ConfigError(
            f"sampling.num_steps: {cfg.sampling.num_anchors} anchor(s) need at least {cfg.sampling.num_anchors + 2} "
            "steps"
        )
    return load_prompts(cfg.prompts.source)


def _check_rewards(cfg: Config) -> None:
    """Reward names and options against their factories, here rather than first inside a reward
    server. With a reward.runtime_env that brings other code (packages, modules, an interpreter, an
    image) the rewards exist in the servers' environment, maybe not in this one: the servers check
    them when they start (a bad name or option still exits 2 with one line), and here only what the
    driver's machine can tell about that environment is checked."""
    import importlib.metadata
    import os

    from rewards.registry import check_options, import_reward_modules, reward_spec
    from rewards.runtime_env import check_runtime_env

    env = cfg.reward.runtime_env
    if env is not None and env.changes_code:
        local = not (cfg.ray.address or os.environ.get("RAY_ADDRESS"))
        check_runtime_env(env, local, importlib.metadata.version("ray"))
        return
    import_reward_modules(cfg.reward.modules)
    for name in cfg.reward.reward_names:
        reward_spec(name)
        check_options(name, cfg.reward.options.get(name, {}))


if __name__ == "__main__":
    sys.exit(main())

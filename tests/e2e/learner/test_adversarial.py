"""The failures found when the system was tried adversarially, each reproduced with real processes:
an unreachable cluster, two drivers on one run directory, non-finite training, a full disk, a
SIGTERM while Ray starts, bad input found only inside an actor, and oversized or malformed inputs.
Each ends as README promises: one `error:` line and the documented exit code, nothing lost."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time

import pytest

from learner.run.checkpoint import checkpoint_dir, list_checkpoints, nonfinite, read_checkpoint
from learner.run.outputs import read_metrics
from tests.conftest import REPO, cli_env, run_cli
from tests.helpers import SMALL_TINY_RUN, process_name, ray_core_processes, tiny_run_args


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


def _one_error(res, code: int) -> str:
    assert res.returncode == code, res.stdout[-2000:] + res.stderr[-3000:]
    errors = _error_lines(res.stderr)
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    return errors[0]


def test_unreachable_cluster_is_an_error_in_bounded_time(tmp_path):
    env = cli_env() | {"RAY_ADDRESS": "127.0.0.1:1"}
    start = time.monotonic()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "learner.main",
            "--epochs",
            "1",
            "--run-dir",
            str(tmp_path / "run"),
            *SMALL_TINY_RUN,
            "ray.connect_timeout_s=5",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 60
    line = _one_error(res, 1)
    assert "the Ray cluster at 127.0.0.1:1 cannot be reached" in line


def test_a_second_driver_on_the_same_run_dir_is_refused(tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        [sys.executable, "-m", "learner.main", *tiny_run_args(run_dir, tiny_cache, 4, "ray.enabled=false")],
        cwd=REPO,
        env=cli_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while "epoch 1/4" not in (tmp_path / "first.log").read_text():  # the first driver is mid-run
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-2000:]
            time.sleep(0.2)
        second = run_cli(
            *tiny_run_args(run_dir, tiny_cache, 4, "ray.enabled=false", "seed=7"), timeout=120
        )  # even another config
        line = _one_error(second, 2)
        assert f"is in use by the driver with pid {first.pid}" in line
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert [m["epoch"] for m in read_metrics(run_dir)] == [0, 1, 2, 3]  # nothing interleaved
    assert read_checkpoint(list_checkpoints(checkpoint_dir(run_dir))[-1]).epoch == 4
    again = run_cli(
        *tiny_run_args(run_dir, tiny_cache, 4, "ray.enabled=false"), timeout=120
    )  # the owner is gone: the lock is free
    assert again.returncode == 0 and "already has 4 epochs" in again.stdout


@pytest.mark.parametrize(
    "override", ["train.learning_rate=.inf", "reward.max_dropped_fraction=.nan", "seed=18446744073709551616"]
)
def test_non_finite_or_oversized_numbers_are_refused(tmp_path, override):
    line = _one_error(run_cli("--run-dir", str(tmp_path / "run"), override, timeout=60), 2)
    assert line.startswith(f"error: {override.split('=')[0]}:")
    assert not (tmp_path / "run").exists()


def test_non_finite_training_stops_before_a_checkpoint_holds_garbage(tiny_cache, tmp_path):
    """A learning rate of 1e30 blows the LoRA up at the first optimizer step: the next steps have
    non-finite losses and are skipped (at most train.max_nonfinite_steps of them), and the next
    epoch's rollout finds the policy sampling non-finite latents. Either stops the run with one line."""
    run_dir = tmp_path / "run"
    res = run_cli(
        *tiny_run_args(
            run_dir, tiny_cache, 3, "ray.enabled=false", "train.learning_rate=1e30", "train.max_nonfinite_steps=1"
        )
    )
    line = _one_error(res, 1)
    assert "non-finite loss or gradient" in line or "sampled non-finite latents" in line, line
    for path in list_checkpoints(checkpoint_dir(run_dir)):
        state = read_checkpoint(path)
        assert not nonfinite({"lora": state.lora, "trainer": state.trainer}), path


def _limit_file_size(max_bytes: int):
    def apply() -> None:  # in the child: writes past max_bytes fail with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def test_a_full_disk_is_one_line_and_the_last_checkpoint_stands(tiny_cache, tmp_path):
    """Every file is capped at 30 kB (RLIMIT_FSIZE), so the first larger output (the checkpoint's 40 kB
    LoRA file, or the reward-curves PNG) cannot be written, as on a full disk."""
    run_dir = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "learner.main", *tiny_run_args(run_dir, tiny_cache, 2, "ray.enabled=false")],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_file_size(30_000),
    )
    line = _one_error(res, 1)
    assert line.startswith("error: cannot write ") and "File too large" in line, line
    assert not list(checkpoint_dir(run_dir).glob(".tmp-*")) and not list_checkpoints(checkpoint_dir(run_dir))


@pytest.mark.parametrize(
    "make, run_dir, needle",
    [
        (lambda d: d.write_text("x"), "", "is a file, so"),  # the run dir is a file
        (lambda d: d.write_text("x"), "below", "is a file, so"),  # a parent of it is
        (lambda d: (d / ".lock").mkdir(parents=True), "", ".lock' is a folder where the run writes a file"),
        (
            lambda d: (d / "metrics.jsonl").mkdir(parents=True),
            "",
            "metrics.jsonl' is a folder where the run writes a file",
        ),
        (lambda d: (d.mkdir(), (d / "lora").write_text("x")), "", "lora' is a file where the run writes a folder"),
    ],
)
def test_run_dir_obstacles_exit_2_before_any_work(tmp_path, make, run_dir, needle):
    """Anything in the way of the run's outputs is found before any work, one line (exit 2), not a
    NotADirectoryError / IsADirectoryError / FileExistsError traceback (the last one only after training)."""
    target = tmp_path / "run"
    make(target)
    line = _one_error(
        run_cli("--run-dir", str(target / run_dir) if run_dir else str(target), "ray.enabled=false", timeout=60), 2
    )
    assert line.startswith("error: output.run_dir: ") and needle in line, line


def test_sigterm_while_ray_starts_exits_143_and_leaves_no_cluster(tiny_cache, tmp_path):
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-m", "learner.main", *tiny_run_args(tmp_path / "run", tiny_cache, 2, "ray.num_cpus=2")],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (cluster := ray_core_processes(proc.pid)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # Ray is starting
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    errors = _error_lines(err)
    assert len(errors) == 1 and errors[0].startswith("error: preempted by SIGTERM"), err[-3000:]
    _, alive = psutil.wait_procs(cluster, timeout=60)
    assert not alive, [process_name(p) for p in alive]


def test_bad_reward_options_exit_2_before_any_actor(tmp_path):
    line = _one_error(
        run_cli("--run-dir", str(tmp_path / "run"), "reward.options.jpeg_compressibility.foo=1", timeout=60), 2
    )
    assert line == "error: reward 'jpeg_compressibility' has no option(s) ['foo']; its options: none"


def test_a_reward_returning_the_wrong_number_of_scores_is_one_line(tiny_cache, tmp_path):
    res = run_cli(
        *tiny_run_args(tmp_path / "run", tiny_cache, 1, "ray.enabled=false"),
        "reward.modules=[tests.fixtures.flaky_rewards]",
        "reward.name=one_score_per_batch",
    )
    line = _one_error(res, 1)
    assert "reward 'one_score_per_batch' returned scores of shape (1,)" in line


def test_a_yaml_alias_bomb_and_a_huge_config_are_refused_fast(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    layers = [
        'a0: &a0 ["xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", '
        '"xxxxxxxx"]'
    ]
    layers += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]  # 9^9 strings once expanded
    bomb.write_text("\n".join(layers) + "\nreward:\n  options:\n    jpeg_compressibility: {x: *a8}\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: x\n" + "# padding\n" * 5_000_000 + "unknown_key: 1\n")  # 50 MB
    for path, needle in ((bomb, "more than 10000 values"), (huge, "bytes; at most 1048576 are read")):
        start = time.monotonic()
        line = _one_error(run_cli("--config", str(path), "--print-config", timeout=60), 2)
        assert needle in line and str(path) in line
        assert time.monotonic() - start < 30


def test_non_utf8_config_and_prompt_files_are_named(tmp_path):
    config, prompts = tmp_path / "c.yaml", tmp_path / "p.txt"
    config.write_bytes(b"name: \xff\xfe\n")
    prompts.write_bytes(b"a cat\n\xff\n")
    assert f"config file '{config}' is not UTF-8 text" in _one_error(run_cli("--config", str(config), timeout=60), 2)
    line = _one_error(run_cli("--run-dir", str(tmp_path / "r"), f"prompts.source={prompts}", timeout=60), 2)
    assert f"prompts.source: '{prompts}' is not UTF-8 text" in line


def test_reward_cli_refuses_a_decompression_bomb_in_one_line(tmp_path):
    """A small PNG whose header claims 30000 x 30000 pixels."""
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("L", (30000, 30000)).save(path, optimize=True)  # all black: compresses to a few hundred kB
    res = subprocess.run(
        [sys.executable, "-m", "rewards", "score", "--reward", "jpeg_compressibility", str(path)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.startswith(f"error: image {path} has 900000000 pixels")


def test_wandb_online_without_credentials_exits_2_before_any_work(tmp_path):
    import os

    env = {k: v for k, v in cli_env().items() if not k.startswith("WANDB_")} | {
        "HOME": str(tmp_path),
        "NETRC": str(tmp_path / "none"),
    }
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "learner.main",
            "--config",
            "tiny",
            "--run-dir",
            str(tmp_path / "r"),
            "output.wandb.enabled=true",
            "ray.enabled=false",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = _one_error(res, 2)
    assert line.startswith("error: output.wandb: no W&B API key") and not os.path.exists(
        tmp_path / "r" / "metrics.jsonl"
    )


def test_two_quick_ctrl_c_on_ray_exit_130_with_one_line_and_leave_no_cluster(tiny_cache, tmp_path):
    """The second Ctrl-C arrives while the first is being handled (its error line printed, the local
    cluster shutting down): it is ignored there, not a KeyboardInterrupt traceback, and the cluster
    still goes."""
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-m", "learner.main", *tiny_run_args(tmp_path / "run", tiny_cache, 20, "ray.num_cpus=2")],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline, seen = time.monotonic() + 240, []

    def read_until(prefix: str) -> None:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(prefix):
                return
            assert time.monotonic() < deadline, "".join(seen)[-3000:]
        raise AssertionError(f"no {prefix!r}:\n" + "".join(seen)[-3000:])

    read_until("epoch 1/20")  # mid-run
    cluster = ray_core_processes(proc.pid)
    proc.send_signal(signal.SIGINT)
    read_until("error: interrupted")  # the first is handled; the clean-up (ray.shutdown) follows
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    text = "".join(seen) + rest
    assert proc.returncode == 130, text[-3000:]
    assert len(_error_lines(text)) == 1 and "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    _, alive = psutil.wait_procs(cluster, timeout=60)
    assert not alive, [process_name(p) for p in alive]


def test_sigterm_at_many_moments_is_never_lost(tiny_cache, tmp_path):
    """SIGTERM sent at spread-out moments of a run on Ray (start-up, Ray starting, the first epochs,
    a checkpoint) always ends it with 143 and one line; a lost signal would train on to exit 0. Two
    runs at a time (the load shifts where each moment falls)."""
    for pair in (
        (0.5, 1.5),
        (3.0, 5.0),
        (8.0, 12.0),
    ):  # seconds after the start (Python itself takes about 0.05 s to start)
        start, procs = time.monotonic(), []
        for delay in pair:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "learner.main",
                        *tiny_run_args(tmp_path / f"run-{delay}", tiny_cache, 200, "ray.num_cpus=2"),
                    ],
                    cwd=REPO,
                    env=cli_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for delay, proc in zip(pair, procs):
            time.sleep(max(0.0, start + delay - time.monotonic()))
            proc.send_signal(signal.SIGTERM)
        for delay, proc in zip(pair, procs):
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 143, (delay, out[-1500:], err[-3000:])
            errors = _error_lines(err)
            assert (
                len(errors) == 1 and errors[0].startswith("error: preempted by SIGTERM") and "Traceback" not in err
            ), (delay, err[-3000:])

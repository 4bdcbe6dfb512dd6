"""Faults in real runs: the real CLI on a real local Ray cluster (started by the driver) and the real
tiny pipeline. A run stopped after epoch 2 (finished, SIGTERM, or kill -9 of the driver) and run
again ends with per-epoch metrics identical to an uninterrupted run; a rollout actor killed
mid-run is restarted and the epoch keeps exactly its pairs; a killed learner ends the run with its
name and the cause; a corrupt checkpoint is skipped. Processes are killed by pid, never by name."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from learner.run.checkpoint import checkpoint_dir, list_checkpoints, problem
from learner.run.outputs import read_metrics
from tests.conftest import REPO, cli_env, run_cli
from tests.helpers import process_name, tiny_run_args

EXACT = (
    "pairs pairs_dropped reward_queries reward_1step_mean reward_final_mean loss clipfrac approx_kl grad_norm "
    "weights_version"
).split()


def assert_same_metrics(run_dir: Path, reference: list[dict]) -> None:
    got = read_metrics(run_dir)
    assert [m["epoch"] for m in got] == [m["epoch"] for m in reference]  # each epoch logged once
    for a, b in zip(got, reference):
        for key in EXACT:
            assert a[key] == b[key], (a["epoch"], key, a[key], b[key])


@pytest.fixture(scope="module")
def reference(tiny_cache, tmp_path_factory) -> list[dict]:
    """An uninterrupted 4-epoch run (in-process: test_e2e shows it equals the Ray run bit for bit)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    res = run_cli(*tiny_run_args(run_dir, tiny_cache, 4, "ray.enabled=false"))
    assert res.returncode == 0, res.stderr[-3000:]
    return read_metrics(run_dir)


class Driver:
    """The CLI as a background process, its output in a file we can poll."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "learner.main", *args],
            cwd=REPO,
            env=cli_env(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if m := re.search(pattern, self.text()):
                return m
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {pattern!r}:\n{self.text()[-3000:]}"
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.text()[-3000:]}")

    def finish(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout)

    def pid_of(self, worker: str, index: int = 0) -> int:
        line = self.wait_for(r"workers: .*").group(0)
        return int(re.findall(worker + r"\(pid=(\d+)", line)[index])


def _last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


def _valid_checkpoints_only(run_dir: Path) -> list[str]:
    d = checkpoint_dir(run_dir)
    assert not list(d.glob(".tmp-*")), "a half-written checkpoint was left behind"
    assert all(problem(p) is None for p in list_checkpoints(d))
    return [p.name for p in list_checkpoints(d)]


def test_finished_run_continues_with_more_epochs_and_a_corrupt_checkpoint_is_skipped(reference, tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*tiny_run_args(run_dir, tiny_cache, 2, "ray.enabled=false")).returncode == 0
    res = run_cli(*tiny_run_args(run_dir, tiny_cache, 2, "ray.enabled=false"))  # the same command again: nothing to do
    assert res.returncode == 0 and "already has 2 epochs" in res.stdout
    shutil.copytree(run_dir, tmp_path / "copy")
    res = run_cli(*tiny_run_args(run_dir, tiny_cache, 3, "ray.enabled=false"))  # a larger --epochs continues it
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming after epoch 2" in res.stdout and "epoch 1/3" not in res.stdout  # no replay of earlier epochs
    assert_same_metrics(run_dir, reference[:3])

    copy = tmp_path / "copy"  # now break the copy's newest checkpoint: it resumes from the one before
    (checkpoint_dir(copy) / "epoch-000002" / "lora_peft.safetensors").write_bytes(b"torn")
    res = run_cli(*tiny_run_args(copy, tiny_cache, 3, "ray.enabled=false"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "epoch-000002 is corrupt or partial" in res.stderr and "resuming after epoch 1" in res.stdout
    assert_same_metrics(copy, reference[:3])


def test_changed_config_is_refused_naming_the_keys(tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*tiny_run_args(run_dir, tiny_cache, 1, "ray.enabled=false")).returncode == 0
    res = run_cli(*tiny_run_args(run_dir, tiny_cache, 2, "ray.enabled=false", "seed=3", "train.learning_rate=0.5"))
    assert res.returncode == 2
    assert _error_lines(res.stderr) == [_last_line(res.stderr)] and "seed, train.learning_rate differ" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli(
        *tiny_run_args(run_dir, tiny_cache, 2, "ray.enabled=false", "output.image_every=7", "rollout.num_actors=1")
    )
    assert res.returncode == 0, res.stderr[-3000:]  # resources and outputs may change


def test_kill_9_of_the_driver_after_epoch_2_then_resume_is_exact(reference, tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    driver = Driver(tiny_run_args(run_dir, tiny_cache, 3, "ray.num_cpus=2"), tmp_path / "first.log")
    driver.wait_for(r"epoch 2/3")  # epoch 2's metrics are logged; its checkpoint may or may not be written
    cluster = psutil.Process(driver.proc.pid).children(recursive=True)  # the Ray cluster this driver started
    driver.proc.send_signal(signal.SIGKILL)
    driver.finish()
    _await_exit(cluster, must=("raylet", "gcs_server"))
    # killed in the middle of a checkpoint write, its temporary directory may be left: never read,
    # and removed by the next write; every complete checkpoint matches its manifest
    assert all(problem(p) is None for p in list_checkpoints(checkpoint_dir(run_dir)))

    res = run_cli(*tiny_run_args(run_dir, tiny_cache, 3, "ray.num_cpus=2"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"resuming after epoch [12] ", res.stdout)
    assert_same_metrics(run_dir, reference[:3])
    _valid_checkpoints_only(run_dir)


def _await_exit(procs: list[psutil.Process], must: tuple[str, ...], timeout: float = 60) -> None:
    """The driver's cluster shares its fate: its raylet and GCS exit on their own. Whatever of ours
    is still alive then (Ray's agents may linger a while) is killed here, by pid."""
    core = [p for p in procs if process_name(p) in must]  # one that has exited is not alive
    _, alive = psutil.wait_procs(core, timeout=timeout)
    assert not alive, f"the Ray cluster outlived its driver: {[process_name(p) for p in alive]}"
    for p in procs:
        if p.is_running():
            p.kill()


def test_sigterm_checkpoints_exits_143_and_the_rerun_is_exact(reference, tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    args = tiny_run_args(run_dir, tiny_cache, 3, "ray.num_cpus=2", "checkpoint.every=3", "checkpoint.grace_s=600")
    driver = Driver(args, tmp_path / "first.log")
    driver.wait_for(r"epoch 1/3")  # epoch 2 starts at once (no checkpoint is due), and epoch 1's length is known
    driver.proc.send_signal(signal.SIGTERM)
    assert driver.finish() == 143
    text = driver.text()
    assert "SIGTERM: finishing this epoch" in text and "epoch 2/3" in text and "epoch 3/3" not in text
    assert "error: preempted by SIGTERM" in text and "Traceback" not in text
    assert _valid_checkpoints_only(run_dir) == ["epoch-000002"]  # written though not due (every=3)

    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming after epoch 2" in res.stdout
    assert_same_metrics(run_dir, reference[:3])


def test_sigterm_with_no_time_to_finish_abandons_the_epoch(tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    driver = Driver(tiny_run_args(run_dir, tiny_cache, 3, "ray.num_cpus=2", "checkpoint.grace_s=0"), tmp_path / "log")
    driver.wait_for(r"epoch 1/3")
    while not (checkpoint_dir(run_dir) / "epoch-000001").exists():
        time.sleep(0.05)
    time.sleep(0.5)  # epoch 2 is under way
    driver.proc.send_signal(signal.SIGTERM)
    assert driver.finish() == 143
    assert "SIGTERM: abandoning this epoch" in driver.text() and "epoch 2/3" not in driver.text()
    assert _valid_checkpoints_only(run_dir) == ["epoch-000001"]


def test_killed_rollout_actor_is_restarted_and_the_epoch_keeps_its_pairs(reference, tiny_cache, tmp_path):
    """The kill comes at a point the test controls: right after the driver reports epoch 1, so the
    actor is past start-up and is killed idle or in epoch 2's weight broadcast or sampling, as the
    machine's load has it. Any of the recovery paths may follow (its pairs go back to the queue; or
    it missed the new weights and is retried before it samples; or it sits the epoch out); what is
    asserted is the outcome: the run finishes, and every epoch has exactly its pairs, with the
    metrics of an uninterrupted run."""
    run_dir = tmp_path / "run"
    driver = Driver(tiny_run_args(run_dir, tiny_cache, 4, "ray.num_cpus=2"), tmp_path / "log")
    victim = psutil.Process(driver.pid_of("RolloutWorker", 0))
    driver.wait_for(r"epoch 1/4 ")
    victim.kill()
    assert driver.finish() == 0, driver.text()[-3000:]
    text = driver.text()
    noticed = (
        r"rollout actor 0 (failed: RolloutWorker\(pid=\d+, host=.*go back to the queue"
        r"|did not take the new weights|is out for the rest)"
    )
    assert re.search(noticed, text), text[-3000:]  # the kill was seen, whichever path recovered from it
    assert "RolloutActorsLostError" not in text
    metrics = read_metrics(run_dir)
    assert [m["pairs"] for m in metrics] == [4] * 4 and [m["reward_queries"] for m in metrics] == [24] * 4
    assert_same_metrics(run_dir, reference)  # the redone pairs are the same samples: nothing lost or doubled


def test_killed_learner_ends_the_run_with_its_name_and_cause(tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    driver = Driver(tiny_run_args(run_dir, tiny_cache, 3, "ray.num_cpus=2"), tmp_path / "log")
    pid = driver.pid_of("LearnerWorker")
    while not (checkpoint_dir(run_dir) / "epoch-000001").exists():
        assert driver.proc.poll() is None
        time.sleep(0.05)
    psutil.Process(pid).kill()
    assert driver.finish() == 1
    errors = _error_lines(driver.text())  # (Ray's own log lines about the dead worker may follow it)
    assert len(errors) == 1 and errors[0].startswith(f"error: LearnerWorker(pid={pid}, host="), errors
    assert (
        " died: its worker process has died" in errors[0] and "resume from" in errors[0] and "epoch-000001" in errors[0]
    )
    assert "Traceback" not in driver.text()
    assert _valid_checkpoints_only(run_dir)[0] == "epoch-000001"


def test_resources_the_cluster_can_never_hold_exit_2_before_starting(tiny_cache, tmp_path):
    res = run_cli(*tiny_run_args(tmp_path / "run", tiny_cache, 1, "ray.num_cpus=2", "rollout.num_gpus=1"), timeout=180)
    assert res.returncode == 2
    errors = _error_lines(res.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: the Ray cluster can never satisfy") and "GPU" in errors[0]
    assert "Traceback" not in res.stderr
    assert not checkpoint_dir(tmp_path / "run").exists()

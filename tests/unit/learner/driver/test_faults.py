"""Fault handling in-process: the SIGTERM decision, one-line descriptions of actor deaths, and the
chunk dispatcher redoing a failed actor's chunk after it has the weights back. (Real actor kills on
real local Ray are in test_fault_e2e.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectReconstructionFailedError, RayActorError

from learner.driver.dispatch import Published, RolloutActorsLostError, run_chunks
from learner.driver.faults import describe_actor_error, failure
from learner.driver.preemption import Preempted, Preemption
from plumbing.errors import EXIT_PREEMPTED
from plumbing.remote import LocalActor


def _call(actor, chunk):
    return actor.rollout.remote(chunk), None  # (the result, no companion object)


DIED = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: LearnerWorker\n\tactor_id: 3642fb41\n"
    "\tpid: 26085\n\tnamespace: x\n\tip: 10.0.0.7\nThe actor is dead because its worker process has died. "
    "Worker exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error code 2. "
    "Some common causes include: (1) the process was killed by the OOM killer due to high memory usage"
)


def test_describe_actor_error_names_the_actor_and_the_cause():
    msg = describe_actor_error(RayActorError("3642fb41", DIED))
    assert msg == "LearnerWorker(pid=26085, ip=10.0.0.7) died: its worker process has died (exit type SYSTEM_ERROR)"
    oom = describe_actor_error(RayActorError("a1", DIED.replace("SYSTEM_ERROR", "NODE_OUT_OF_MEMORY")))
    assert oom.endswith("died: out of memory (killed by Ray's memory monitor)")
    node = describe_actor_error(
        RayActorError(
            "a1", "\tclass_name: X\n\tpid: 5\n\tip: 1.2.3.4\nThe actor is dead because its node has died. Node Id: 9"
        )
    )
    assert node == "X(pid=5, ip=1.2.3.4) died: its node was lost (the node died)"
    restarting = ActorUnavailableError(
        "The actor is temporarily unavailable: IOError: The actor is restarting.. The task may or may not have been "
        "executed on the actor.",
        b"\x01" * 16,
    )
    assert describe_actor_error(restarting).endswith("is unreachable: Ray is restarting it")


def test_worker_names_report_a_failure_under_the_name_the_worker_had():
    """The run's WorkerNames (owned by its Workers) maps Ray actor ids to identity(); two runs in one
    process keep their names apart."""
    from learner.driver.faults import WorkerNames

    class Worker:
        def __init__(self, name):
            self.name = name

        def identity(self):
            return self.name

    class ActorId:
        def hex(self):
            return "3642fb41"

    handle = LocalActor(Worker("rollout actor 1 (pid=26085)"))
    handle._actor_id = ActorId()
    names, other_run = WorkerNames(), WorkerNames()
    assert names.record([handle]) == ["rollout actor 1 (pid=26085)"]
    err = RayActorError("3642fb41", DIED)
    assert (
        names.describe(err) == "rollout actor 1 (pid=26085) died: its worker process has died (exit type SYSTEM_ERROR)"
    )
    assert other_run.describe(err).startswith("LearnerWorker(pid=26085, ip=10.0.0.7) died")
    assert failure(err, None, Path("/nonexistent"), names).message.startswith("rollout actor 1 (pid=26085) died")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sigterm():
    """Restores the SIGTERM handler the test process had."""
    saved = signal.getsignal(signal.SIGTERM)
    yield lambda: os.kill(os.getpid(), signal.SIGTERM)  # a real signal to this process
    signal.signal(signal.SIGTERM, saved)


def _preemption(epoch_s: float | None, elapsed: float, grace: float) -> Preemption:
    """An installed Preemption whose last epoch took `epoch_s` (None: no epoch timed yet) and whose
    current epoch started `elapsed` seconds ago, on a test clock."""
    clock = Clock()
    p = Preemption(grace, clock=clock).install()
    if epoch_s is not None:
        p.epoch_started()
        clock.now += epoch_s
    p.epoch_started()
    clock.now += elapsed
    return p


def test_sigterm_finishes_the_epoch_when_it_fits_in_the_grace_period(sigterm):
    p = _preemption(epoch_s=10.0, elapsed=8.0, grace=5.0)  # ~2 s left <= 5 s
    sigterm()
    assert p.requested and not p.abandoned
    with pytest.raises(Preempted) as exc:
        p.exit_if_requested()
    assert exc.value.code == EXIT_PREEMPTED == 143


def test_sigterm_abandons_the_epoch_when_it_does_not_fit_or_is_unknown(sigterm):
    for epoch_s, grace in ((100.0, 5.0), (None, 60.0)):
        p = _preemption(epoch_s=epoch_s, elapsed=1.0, grace=grace)  # installed: the handler is its own
        with pytest.raises(Preempted):
            sigterm()
        assert p.abandoned and not p.requested


def test_a_sigterm_whose_exception_was_swallowed_is_not_lost(sigterm):
    """The handler's Preempted can land inside code that swallows it (a finalizer: Python prints
    "Exception ignored in ..." and goes on). The run must still end with 143: at the next epoch
    boundary, and at once on any later SIGTERM."""
    p = _preemption(epoch_s=None, elapsed=1.0, grace=0.0)
    try:
        sigterm()
    except Preempted:
        pass  # swallowed, as a finalizer would
    assert p.abandoned
    with pytest.raises(Preempted):
        sigterm()  # a second SIGTERM is no longer ignored
    for boundary in (p.epoch_started, p.exit_if_requested):
        with pytest.raises(Preempted):
            boundary()


def test_sigterm_never_interrupts_a_checkpoint_write(sigterm):
    p = _preemption(epoch_s=None, elapsed=0.0, grace=0.0)
    with p.critical():
        sigterm()  # no raise inside the critical section
    assert p.requested


def test_a_sigterm_while_ray_starts_waits_for_it_then_exits_143(sigterm, capfd):
    """Before the first epoch, a critical section (Ray's start-up) only records the signal, with a
    line saying so; the run leaves at the next boundary."""
    p = Preemption(grace_s=20.0).install()
    with p.critical("Ray's start-up"):
        sigterm()
    assert p.requested and "SIGTERM: exiting once Ray's start-up is done" in capfd.readouterr().err
    with pytest.raises(Preempted):
        p.exit_if_requested()


def test_a_first_ctrl_c_waits_for_the_checkpoint_being_written_a_second_does_not():
    p, steps = Preemption(grace_s=0.0), []
    with pytest.raises(KeyboardInterrupt):
        with p.critical():
            os.kill(os.getpid(), signal.SIGINT)  # delivered here, held
            steps.append("checkpoint written")
    assert steps == ["checkpoint written"]  # raised only after the section
    with pytest.raises(KeyboardInterrupt):
        with p.critical():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second one interrupts at once
            steps.append("not reached")
    assert steps == ["checkpoint written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back


class FlakyRollout:
    """A stand-in rollout worker (in-process) whose sampling fails like a killed Ray actor on chosen calls."""

    def __init__(self, fail_on: set[int], log: list, name: str, dies: bool = False):
        self.fail_on, self.log, self.name, self.calls, self.version = fail_on, log, name, 0, -1
        self.dies, self.dead = dies, False

    def set_weights(self, weights) -> int:
        if self.dead:
            raise ActorDiedError()  # what a new call to an actor that is dead for good raises
        self.log.append((self.name, "weights", weights))
        self.version = weights
        return weights

    def rollout(self, chunk: list[int]) -> list[int]:
        self.calls += 1
        if self.calls in self.fail_on:
            self.version, self.dead = -1, self.dies  # a restarted actor holds no weights
            raise ActorUnavailableError(
                "The actor is temporarily unavailable: restarting. The task may or may not", b"\x02" * 16
            )
        assert self.version == 7, "sampled before it had the current weights"
        self.log.append((self.name, "chunk", tuple(chunk)))
        return chunk


def test_a_failed_actors_chunk_is_redone_once_and_it_reloads_weights_first():
    log: list = []
    actors = [LocalActor(FlakyRollout({2}, log, "a")), LocalActor(FlakyRollout(set(), log, "b"))]
    chunks = [[0, 1], [2, 3], [4, 5], [6, 7]]
    got = [r for r, _ in run_chunks(actors, chunks, _call, Published(7, 7, {0, 1}), 60.0)]
    assert sorted(map(tuple, got)) == [(0, 1), (2, 3), (4, 5), (6, 7)]  # every chunk exactly once
    sampled = [e[2] for e in log if e[1] == "chunk"]
    assert sorted(sampled) == [(0, 1), (2, 3), (4, 5), (6, 7)]  # a's failed chunk (4, 5) sampled once, by b
    for name in "ab":  # both stale at the start: weights before their first chunk
        assert [e for e in log if e[0] == name][0] == (name, "weights", 7)


def test_a_restarted_actor_gets_the_weights_before_it_samples_again():
    log: list = []
    actor = LocalActor(FlakyRollout({1}, log, "a"))  # FlakyRollout asserts it holds version 7 when sampling
    got = [r for r, _ in run_chunks([actor], [[0], [1]], _call, Published(7, 7), 60.0)]
    assert got == [[0], [1]]
    assert log == [("a", "weights", 7), ("a", "chunk", (0,)), ("a", "chunk", (1,))]


def test_all_actors_dead_for_good_is_an_error():
    log: list = []
    actors = [LocalActor(FlakyRollout({1}, log, "a", dies=True))]
    with pytest.raises(RolloutActorsLostError, match="all 1 rollout actors are lost"):
        list(run_chunks(actors, [[0], [1]], _call, Published(7, 7), 60.0))


def test_failures_map_to_exit_codes_and_one_line_messages(tmp_path):
    from learner.config import ConfigError
    from learner.driver.faults import failure
    from learner.driver.stages import TooManyDroppedError

    assert failure(ConfigError("seed: bad"), None, tmp_path).code == 2
    died = failure(RayActorError("x", DIED), None, tmp_path)
    assert died.code == 1 and died.message.startswith("LearnerWorker(pid=26085, ip=10.0.0.7) died:")
    assert "no checkpoint was written yet" in died.message and "\n" not in died.message
    bad_model = RayActorError(
        "x",
        "The actor died because of an error raised in its creation task, ray::RolloutWorker.__init__()\n"
        "OSError: no file\nModelLoadError: model.pretrained: cannot load 'x': no file",
        actor_init_failed=True,
    )
    assert (failure(bad_model, None, tmp_path).code, failure(bad_model, None, tmp_path).message) == (
        2,
        "model.pretrained: cannot load 'x': no file",
    )
    assert failure(TooManyDroppedError("3 of 4 pairs"), None, tmp_path).code == 1
    lost = failure(ObjectReconstructionFailedError("ab" * 14), None, tmp_path)  # a result lost with its node
    assert (
        lost.code == 1
        and " died" in lost.message
        and "no checkpoint was written yet" in lost.message
        and "\n" not in lost.message
    )
    assert failure(KeyboardInterrupt(), None, tmp_path).code == 130
    p = Preemption(1.0)
    p.abandoned = True
    assert failure(SystemExit(1), p, tmp_path).code == 143  # what Ray turns the handler's exit into
    assert failure(RuntimeError("a bug"), p, tmp_path) is None  # bugs keep their traceback


def test_out_of_memory_inside_an_actor_method_is_one_line(tmp_path):
    from ray.exceptions import RayTaskError

    from learner.driver.faults import failure

    text = (
        "\x1b[36mray::LearnerWorker.update()\x1b[39m (pid=7, ip=1.2.3.4, actor_id=ab)\n"
        "  File x\nOutOfMemoryError: CUDA out of memory"
    )
    err = RayTaskError(
        "update", text, MemoryError("CUDA out of memory. Tried to allocate 2 GiB"), pid=7, ip="1.2.3.4"
    ).as_instanceof_cause()
    fail = failure(err, None, tmp_path)
    assert fail.code == 1 and fail.message.startswith(
        "LearnerWorker.update (pid=7, ip=1.2.3.4) ran out of memory: CUDA out of memory"
    )


def test_project_errors_inside_an_actor_map_by_their_type(tmp_path):
    """A RayTaskError carries the original exception: its class decides the exit code, no text parsing."""
    from ray.exceptions import RayTaskError

    from actors.prompts import PromptError
    from learner.driver.faults import failure
    from rewards.server import RewardFunctionError

    usage = RayTaskError("setup", "text", PromptError("prompts.source: 'x' holds no prompts")).as_instanceof_cause()
    assert (failure(usage, None, tmp_path).code, failure(usage, None, tmp_path).message) == (
        2,
        "prompts.source: 'x' holds no prompts",
    )
    bug = RayTaskError(
        "score", "text", RewardFunctionError("reward 'x' raised ValueError: boom", "Traceback ...")
    ).as_instanceof_cause()
    fail = failure(bug, None, tmp_path)
    assert fail.code == 1 and fail.message.startswith("reward 'x' raised ValueError: boom; ")

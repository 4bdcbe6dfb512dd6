"""Learner ranks recovered in place (learner.max_restarts > 0, on Ray).

When a learner rank dies (a hybrid policy worker, or a learner worker of the disaggregated layout),
Ray restarts its actor in the same placement-group bundle. The driver then:
1. waits until every rank answers (learner.restart_timeout_s), and tells the restarted ranks by
   their new process ids;
2. forms the data-parallel group again (every rank leaves the broken one first);
3. rewinds every surviving rank to the state it kept at the epoch's start (policy version v) and
   gives each restarted rank a survivor's: after the all-reduce every rank holds the same LoRA,
   optimizer and scaler state;
4. runs the epoch again: the same prompts and seeds sample the same trajectories, the driver's stat
   tracker and RNGs are put back as they were, and the reward pool forgets the lost attempt, so the
   epoch's metrics equal an uninterrupted run's.
A checkpoint whose write lost a rank is taken again the same way. When no rank survives, or Ray's
restart budget for the rank is spent, the run ends with exit 1 and resumes on rerun, as with
learner.max_restarts = 0.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from learner.driver.config import LearnerConfig
from learner.driver.dispatch import RankLostError
from learner.driver.faults import WorkerNames
from learner.driver.launch import Workers
from plumbing.errors import RunFailure
from plumbing.ray_errors import ray_errors
from plumbing.remote import actor_failures, get

log = logging.getLogger(__name__)
T = TypeVar("T")


class RankNotBackError(RunFailure):
    """A lost learner rank was not restarted (Ray's budget spent) or not back in time."""


class RankRecovery:
    def __init__(self, workers: Workers, cfg: LearnerConfig, on_ray: bool):
        """Recovery is on with Ray, learner.max_restarts > 0 and more than one rank."""
        self.workers, self.cfg = workers, cfg
        self.enabled = (
            on_ray and cfg.max_restarts > 0 and cfg.num_workers > 1
        )  # one rank: no survivor could hand over its state
        self.identities = get([r.identity.remote() for r in workers.learner.ranks]) if self.enabled else []
        self.recoveries = 0
        self.replaced: dict[int, tuple[str, str]] = {}

    def run(self, attempt: Callable[[], T], version: int, what: str, on_retry: Callable[[], None] = lambda: None) -> T:
        """attempt(), and again each time a lost rank was recovered in place: the ranks hold policy
        `version` again and on_retry() has put the driver's own state back. `what`: 'epoch 3' (messages)."""
        while True:
            try:
                return attempt()
            except Exception as err:
                if not self.enabled or not _may_be_a_lost_rank(err):
                    raise
                lost = self._lost_ranks(err)
                if not lost:
                    raise
                self._recover(lost, version, what, err)
                on_retry()

    def _lost_ranks(self, err: BaseException) -> list[int]:
        """The ranks whose process was replaced by Ray's restart; waits for every rank to answer."""
        died, busy = ray_errors("ActorDiedError"), ray_errors("ActorUnavailableError", "GetTimeoutError")
        ranks, deadline = self.workers.learner.ranks, time.monotonic() + self.cfg.restart_timeout_s
        now = []
        for r, rank in enumerate(ranks):
            while True:
                try:
                    now.append(get(rank.identity.remote(), timeout=max(0.1, deadline - time.monotonic())))
                    break
                except died as dead:  # dead for good: its restarts are spent (while restarting: unavailable)
                    raise RankNotBackError(
                        f"{self.workers.names.describe(dead)}; Ray does not restart it again "
                        f"(learner.max_restarts={self.cfg.max_restarts})"
                    ) from None
                except busy:  # restarting, or busy past the bound
                    pass
                if time.monotonic() > deadline:  # the error stands as it is (exit 1, naming the actor)
                    log.warning(
                        "learner rank %d (%s) did not answer within learner.restart_timeout_s=%gs",
                        r,
                        self.identities[r],
                        self.cfg.restart_timeout_s,
                    )
                    raise err
                time.sleep(0.2)
        lost = [r for r, (before, after) in enumerate(zip(self.identities, now)) if before != after]
        self.replaced = {
            r: (self.identities[r], now[r]) for r in lost
        }  # rank -> (its lost identity, the restarted one's)
        self.identities = now
        return lost

    def _recover(self, lost: list[int], version: int, what: str, err: BaseException) -> None:
        ranks = self.workers.learner.ranks
        survivors = [r for r in range(len(ranks)) if r not in lost]
        who = "; ".join(
            f"{before} was lost and restarted as pid {_pid(after)}" for before, after in self.replaced.values()
        )
        if not survivors:
            raise RankNotBackError(
                f"{_cause(err, self.workers.names) or who}; Ray restarted it, but no learner rank survived to hand "
                f"over the state of policy version {version}"
            )
        log.warning("%s: forming the learner group again; %s runs again from policy version %d", who, what, version)
        get([rank.leave_group.remote() for rank in ranks])
        if len(ranks) > 1:
            self.workers.form_learner_group()
        kept = get([ranks[r].rewind.remote(version) for r in survivors])
        donors = [r for r, ok in zip(survivors, kept) if ok]
        if not donors:
            raise RankNotBackError(f"no surviving learner rank keeps the state of policy version {version} ({who})")
        state = ranks[donors[0]].epoch_state.remote(version)  # one copy in the object store for every restarted rank
        get([ranks[r].rewind.remote(version, state) for r in lost])
        self.workers.names.record(ranks)  # failures are reported under the restarted ranks' names
        self.recoveries += 1


def _cause(err: BaseException, names: WorkerNames) -> str | None:
    """'<name> died: <cause>' when `err` is (or wraps) the lost actor's own error."""
    if isinstance(err, RankLostError) and err.__cause__ is not None:
        err = err.__cause__
    return names.describe(err) if isinstance(err, actor_failures()) else None


def _pid(identity: str) -> str:
    return identity.split("pid=", 1)[-1].split(",", 1)[0]


def _may_be_a_lost_rank(err: BaseException) -> bool:
    """An actor error, or an error raised inside an actor (a survivor's collective broken by a lost member)."""
    if isinstance(err, (RankLostError, *actor_failures())):
        return True
    return isinstance(err, ray_errors("RayTaskError"))

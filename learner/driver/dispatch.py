"""Handing rollout chunks to the rollout actors, and surviving a rollout actor that dies.

An idle actor takes the next chunk. An actor that fails (Ray reports it dead or unreachable: its
process died, its node was lost, or Ray is restarting it) gives its unfinished chunk back to the
queue, where the next idle actor takes it: the same pair indices, so the same samples (pairs are
seeded by (seed, epoch, pair index)); no pair is lost or sampled twice. Meanwhile the live actors
keep sampling. While Ray restarts the failed actor (rollout.max_restarts), it is offered the
current weights, with backoff, until it has loaded them; only then does it take chunks again. An
actor that is dead for good, or not back within restart_timeout_s, sits out the rest of the epoch
(the next epoch's weight broadcast tries it again).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from actors.rollout_worker import StaleWeightsError
from learner.driver.faults import describe_actor_error
from plumbing.errors import RunFailure
from plumbing.ray_errors import ray_errors
from plumbing.remote import actor_failures, get, is_local, wait_one

log = logging.getLogger(__name__)


class RankLostError(RunFailure):
    """A learner rank (here: a hybrid policy worker) died while the driver waited for it; `__cause__`
    is Ray's error (learner.driver.recovery recovers it in place)."""


class RolloutActorsLostError(RunFailure):
    """Every rollout actor is dead for good (or did not come back in time)."""


@dataclass
class Published:
    """One policy version as the rollout actors get it."""

    version: int
    ref: Any  # the PolicyWeights, in the object store once (or the value itself in-process)
    stale: set[int] = field(default_factory=set)  # actors that failed to load it: they load it before they sample


def load_weights(rollouts: list, ref: Any, describe: Callable[[BaseException], str] = describe_actor_error) -> set[int]:
    """Load the weights `ref` on every actor; the indices of those that failed (dead or restarting).
    If the weights themselves could not be made (the learner that produces them died), that error
    is raised: no rollout actor is at fault."""
    calls = [actor.set_weights.remote(ref) for actor in rollouts]
    stale = set()
    for i, call in enumerate(calls):
        try:
            get(call)
        except actor_failures() as err:
            if _not_this_actor(err, rollouts[i]):  # another actor failed: the weights' producer
                raise
            log.warning(
                "rollout actor %d did not take the new weights (%s); retrying before it samples", i, describe(err)
            )
            stale.add(i)
    return stale


def _not_this_actor(err: BaseException, actor: Any) -> bool:
    """Ray reports the failure of another actor (e.g. the learner whose result was this call's
    argument), not of the Ray actor `actor` that was called."""
    own = getattr(actor, "_actor_id", None)
    other = getattr(err, "actor_id", None)
    return own is not None and other is not None and other != own.hex()


@dataclass
class _Recovery:
    since: float  # when the actor first failed
    next_try: float  # when to offer it the weights again
    tries: int = 0


def run_chunks(
    rollouts: list,
    chunks: list[list[int]],
    call: Callable[[Any, list[int]], tuple],
    weights: Published,
    restart_timeout_s: float,
    describe: Callable[[BaseException], str] = describe_actor_error,
) -> Iterator[tuple[Any, Any]]:
    """For every chunk, `call(actor, chunk)` returns (result ref, companion ref); yield (result,
    companion ref) in order of arrival (the companion, e.g. the chunk's trajectories, is not fetched)."""
    queue = deque(chunks)
    inflight: dict[Any, tuple[int, list[int] | None]] = {}  # ref -> (actor, its chunk; None for a weights load)
    now = time.monotonic()
    recovering = {a: _Recovery(now, now) for a in weights.stale}
    dead: set[int] = set()
    causes: list[str] = []
    companions: dict[Any, Any] = {}
    while queue or any(chunk is not None for _, chunk in inflight.values()):
        now = time.monotonic()
        busy = {a for a, _ in inflight.values()}
        for a, actor in enumerate(rollouts):
            if a in dead or a in busy:
                continue
            if a in recovering:
                if recovering[a].next_try <= now:
                    inflight[actor.set_weights.remote(weights.ref)] = (a, None)
            elif queue:
                chunk = queue.popleft()
                ref, companion = call(actor, chunk)
                inflight[ref] = (a, chunk)
                companions[ref] = companion
        if len(dead) == len(rollouts):
            raise RolloutActorsLostError(
                f"all {len(rollouts)} rollout actors are lost ({'; '.join(causes[-len(rollouts) :])})"
            )
        busy = {a for a, _ in inflight.values()}
        ref = _next_done(
            list(inflight), min((r.next_try for a, r in recovering.items() if a not in busy), default=None)
        )
        if ref is None:
            continue  # time to offer a recovering actor the weights again
        a, chunk = inflight.pop(ref)
        try:
            result = get(ref)
        except (*actor_failures(), StaleWeightsError) as err:  # dead, unreachable, or restarted without weights
            if _not_this_actor(err, rollouts[a]):  # the weights' producer (the learner) failed, not this actor
                raise
            cause = describe(err) if isinstance(err, actor_failures()) else str(err).strip().splitlines()[-1]
            companions.pop(ref, None)
            causes.append(cause)
            if chunk is not None:
                queue.appendleft(chunk)
                log.warning(
                    "rollout actor %d failed: %s; its pairs %d-%d go back to the queue", a, cause, chunk[0], chunk[-1]
                )
            r = recovering.setdefault(a, _Recovery(now, now))
            gone = _died(err) and chunk is None  # a new call to a dead actor
            if gone or now - r.since > restart_timeout_s:
                dead.add(a)
                del recovering[a]
                log.warning(
                    "rollout actor %d is out for the rest of this epoch (%s)", a, "dead" if gone else "not back in time"
                )
            else:
                r.tries += 1
                r.next_try = now + min(0.25 * 2**r.tries, 5.0)
            continue
        if chunk is None:
            del recovering[a]
            log.warning("rollout actor %d is back with the weights of version %d", a, weights.version)
        else:
            yield result, companions.pop(ref)


def _next_done(pending: list, next_try: float | None):
    """The first finished of `pending`, or None once `next_try` (monotonic time) has come."""
    if not pending:
        time.sleep(max(0.0, (next_try or time.monotonic()) - time.monotonic()))
        return None
    if next_try is None or is_local(pending[0]):
        return wait_one(pending)
    return wait_one(pending, timeout=max(0.0, next_try - time.monotonic()))


def run_assigned(
    workers: list,
    assignment: list[list[list[int]]],
    call: Callable[[Any, list[int]], tuple],
    describe: Callable[[BaseException], str] = describe_actor_error,
) -> Iterator[tuple[Any, Any]]:
    """The hybrid layout's rollout: worker w samples exactly the chunks assignment[w] (its own shard,
    whose trajectories it keeps for its update). Yields (result, companion ref) in order of arrival.
    A worker that fails cannot hand its shard to another (the trajectories belong where they are
    trained): the epoch stops with a RunFailure naming it, and a rerun resumes from the last checkpoint."""
    inflight = {}
    for w, chunks in enumerate(assignment):
        for chunk in chunks:  # Ray runs an actor's calls in submission order
            ref, companion = call(workers[w], chunk)
            inflight[ref] = companion
    while inflight:
        ref = wait_one(list(inflight))
        companion = inflight.pop(ref)
        try:
            result = get(ref)
        except actor_failures() as err:
            raise RankLostError(
                f"{describe(err)}; a hybrid policy worker's shard cannot move to another worker"
            ) from err
        yield result, companion


def _died(err: BaseException) -> bool:
    """Ray says the actor is dead (not merely unreachable or restarting)."""
    return isinstance(err, ray_errors("ActorDiedError"))

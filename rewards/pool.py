"""The driver's client of the reward-server pool: batches images across rollout chunks up to the
servers' batch size, spreads calls over the servers, and retries a call whose server died,
restarted or timed out on another server a bounded number of times. A call that still fails is
missing data (NaN scores), never zeros: the caller drops those pairs. A reward function that raises
on valid input (RewardFunctionError) is a bug, not a fault: it stops the run at once."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from plumbing.ray_errors import ray_errors
from plumbing.remote import actor_failures, get, is_local
from rewards.server import RewardFunctionError, ScoreRequest, ScoreResult

log = logging.getLogger(__name__)


@dataclass
class _Call:
    request: ScoreRequest  # the combined images of one or more tickets
    server: int  # index of the server it was sent to
    ref: object  # ObjectRef (or in-process result)
    attempts: int = 1
    sent_at: float = field(default_factory=time.perf_counter)


@dataclass
class PoolStats:
    calls: int = 0  # server calls made (retries included)
    retries: int = 0
    failed_calls: int = 0  # calls that failed for good (their images became NaN)
    images: int = 0  # images scored (real reward-model queries)
    model_seconds: float = 0.0  # time inside the reward models, summed over calls
    latencies: list = field(default_factory=list)  # seconds from send to result, per successful call


def _retryable() -> tuple[type[BaseException], ...]:
    """A server that died, is restarting or unreachable, or did not answer in time."""
    return (*actor_failures(), *ray_errors("GetTimeoutError"))


def _reward_bug(err: BaseException) -> RewardFunctionError | None:
    """The RewardFunctionError inside `err` (raised in-process, or carried by Ray's RayTaskError)."""
    cause = err if isinstance(err, RewardFunctionError) else getattr(err, "cause", None)
    return cause if isinstance(cause, RewardFunctionError) else None


class RewardPool:
    def __init__(self, servers: list, batch_size: int, timeout_s: float, max_retries: int):
        self.servers, self.batch_size = servers, batch_size
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self._next = itertools.cycle(range(len(servers)))
        self._queued: list[tuple[int, ScoreRequest]] = []  # (ticket, request) not yet sent
        self._calls: list[tuple[_Call, list[tuple[int, int, int]]]] = []  # call, [(ticket, offset, n)]
        self._ticket = 0
        self.stats = PoolStats()

    def take_stats(self) -> PoolStats:
        """The statistics since the last call (e.g. one epoch's), and a fresh count from now on."""
        stats, self.stats = self.stats, PoolStats()
        return stats

    def abandon(self) -> None:
        """Forget every queued and in-flight call and the statistics since the last take_stats (an
        epoch that runs again); the servers finish the abandoned calls, whose results are dropped."""
        self._queued, self._calls = [], []
        self.take_stats()

    def submit(self, request: ScoreRequest) -> int:
        """Queue a request; send queued requests as one call once they reach `batch_size` images."""
        ticket, self._ticket = self._ticket, self._ticket + 1
        self._queued.append((ticket, request.validate()))
        if sum(len(r.prompts) for _, r in self._queued) >= self.batch_size:
            self.flush()
        return ticket

    def flush(self) -> None:
        if not self._queued:
            return
        request = ScoreRequest(
            np.concatenate([r.images for _, r in self._queued]), [p for _, r in self._queued for p in r.prompts]
        )
        spans, offset = [], 0
        for ticket, r in self._queued:
            spans.append((ticket, offset, len(r.prompts)))
            offset += len(r.prompts)
        self._queued = []
        self._calls.append((self._send(request, next(self._next)), spans))

    def _send(self, request: ScoreRequest, server: int, attempts: int = 1) -> _Call:
        self.stats.calls += 1
        return _Call(request, server, self.servers[server].score.remote(request), attempts)

    def collect(self) -> dict[int, ScoreResult]:
        """Wait for every call; ticket -> its result (scores NaN where the call failed for good)."""
        self.flush()
        results: dict[int, ScoreResult] = {}
        for call, spans in self._calls:
            result = self._wait(call)
            for ticket, offset, n in spans:
                part = slice(offset, offset + n)
                results[ticket] = ScoreResult(
                    result.scores[part], {k: v[part] for k, v in result.components.items()}, result.seconds
                )
        self._calls = []
        return results

    def _wait(self, call: _Call) -> ScoreResult:
        while True:
            try:
                timeout = (
                    None if is_local(call.ref) else max(0.0, self.timeout_s - (time.perf_counter() - call.sent_at))
                )
                result = get(call.ref, timeout=timeout)
                self.stats.images += len(call.request.prompts)
                self.stats.model_seconds += result.seconds
                self.stats.latencies.append(time.perf_counter() - call.sent_at)
                return result
            except Exception as err:
                bug = _reward_bug(err)
                if bug is not None:
                    self._calls = []
                    raise bug from None
                if not isinstance(err, _retryable()):
                    raise
                if call.attempts > self.max_retries:
                    self.stats.failed_calls += 1
                    log.warning(
                        "reward call failed after %d attempts (%s): its pairs are dropped",
                        call.attempts,
                        _one_line(err),
                    )
                    n = len(call.request.prompts)
                    return ScoreResult(np.full(n, np.nan), {}, 0.0)
                self.stats.retries += 1
                if not is_local(call.ref):
                    time.sleep(min(2.0 ** (call.attempts - 1), 10.0))  # let a crashed server restart
                other = (call.server + 1) % len(self.servers)
                log.warning(
                    "reward call on server %d failed (%s); retrying on server %d", call.server, _one_line(err), other
                )
                call = self._send(call.request, other, call.attempts + 1)


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]

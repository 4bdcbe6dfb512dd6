"""The reward service (rewards/pool.py): batching across rollout chunks, retries of a dead server's
call on another server, missing rewards dropped and counted (never zeros), a broken reward function
stopping the run with its own traceback, in-process (in real runs, a real reward-server crash
included: tests/e2e/rewards/test_pool_e2e.py)."""

from __future__ import annotations

import numpy as np
import pytest

from plumbing.remote import LocalActor
from rewards.jpeg import jpeg_size_kb
from rewards.pool import RewardPool
from rewards.server import RewardFunctionError, RewardServer, ScoreRequest

MODULES = ("tests.fixtures.flaky_rewards",)


class DeadServer:
    """A reward server whose actor process is gone: every call raises Ray's ActorDiedError, as a
    call to a dead actor does."""

    def score(self, request):
        from ray.exceptions import ActorDiedError

        raise ActorDiedError()


def _request(n: int, seed: int, prompt: str = "a dog") -> ScoreRequest:
    images = np.random.default_rng(seed).integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    return ScoreRequest(images, [prompt] * n)


def test_requests_from_several_chunks_are_batched_up_to_batch_size():
    server = RewardServer(name="jpeg_compressibility", batch_size=12)
    pool = RewardPool([LocalActor(server)], batch_size=12, timeout_s=60, max_retries=0)
    requests = [_request(6, seed) for seed in range(3)]
    tickets = [pool.submit(r) for r in requests]
    assert pool.stats.calls == 1  # chunks 0 and 1 (6 + 6 images) went out together
    results = pool.collect()
    assert pool.stats.calls == 2 and pool.stats.images == 18 and server.calls == 18
    for ticket, request in zip(tickets, requests):
        assert np.array_equal(results[ticket].scores, -jpeg_size_kb(request.images))
    stats = pool.take_stats()  # an epoch's figures, and a fresh count after
    assert stats.images == 18 and pool.stats.images == 0 and pool.stats.calls == 0


def test_a_dead_servers_call_is_retried_on_another_server():
    pool = RewardPool(
        [LocalActor(DeadServer()), LocalActor(RewardServer(name="jpeg_compressibility"))],
        batch_size=4,
        timeout_s=60,
        max_retries=2,
    )
    request = _request(4, 0)
    ticket = pool.submit(request)
    result = pool.collect()[ticket]
    assert pool.stats.retries == 1 and pool.stats.failed_calls == 0
    assert np.array_equal(result.scores, -jpeg_size_kb(request.images))


def test_a_call_that_keeps_failing_becomes_nan_not_zero():
    pool = RewardPool([LocalActor(DeadServer())], batch_size=4, timeout_s=60, max_retries=1)
    ticket = pool.submit(_request(4, 0))
    result = pool.collect()[ticket]
    assert pool.stats.failed_calls == 1 and pool.stats.retries == 1
    assert np.isnan(result.scores).all()


def test_a_reward_that_raises_stops_at_once_with_its_traceback():
    """An exception from the reward function on valid input is a bug in the reward: no retry."""
    servers = [LocalActor(RewardServer(name="always_fails", modules=MODULES)) for _ in range(2)]
    pool = RewardPool(servers, batch_size=4, timeout_s=60, max_retries=2)
    pool.submit(_request(4, 0))
    with pytest.raises(
        RewardFunctionError, match="reward 'always_fails' raised RuntimeError: reward model is down"
    ) as err:
        pool.collect()
    assert pool.stats.retries == 0 and err.value.exit_code == 1
    assert "Traceback" in err.value.details and "flaky_rewards.py" in err.value.details


def test_a_reward_returning_the_wrong_number_of_scores_is_an_error():
    server = RewardServer(name="one_score_per_batch", modules=MODULES)
    with pytest.raises(RewardFunctionError, match=r"returned scores of shape \(1,\) for 4 images"):
        server.score(_request(4, 0))

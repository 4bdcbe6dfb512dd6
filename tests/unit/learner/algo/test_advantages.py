"""Tests for learner/algo/advantages.py: discounted returns, per-(prompt, step) stat tracking, clipping (spec section
4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from learner.algo.advantages import StepStatTracker, batch_normalize, clip_advantages, discounted_returns

SQ5 = math.sqrt(5) + 1e-6  # std of {1, 3, 5, 7} (population: sqrt((9 + 1 + 1 + 9) / 4)) plus the 1e-6


# ---------------------------------------------------------------- returns


def test_discounted_returns_hand_worked():
    # G[2] = 3;  G[1] = 2 + 0.5 * 3 = 3.5;  G[0] = 1 + 0.5 * 3.5 = 2.75
    # second row, gamma 0.5: G = [0 + .5 * (0 + .5 * 4), 0 + .5 * 4, 4] = [1, 2, 4]
    r = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    np.testing.assert_allclose(discounted_returns(r, 0.5), [[2.75, 3.5, 3.0], [1.0, 2.0, 4.0]])
    # gamma 1: reversed cumulative sums [1+2+3, 2+3, 3] = [6, 5, 3]
    np.testing.assert_allclose(discounted_returns(r[:1], 1.0), [[6.0, 5.0, 3.0]])
    np.testing.assert_array_equal(r, [[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])  # input untouched


def test_gamma_zero_is_identity():
    r = np.random.default_rng(0).normal(size=(4, 7))
    np.testing.assert_array_equal(discounted_returns(r, 0.0), r)


def test_discounted_returns_equal_loop():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(5, 9))
    expected = np.zeros_like(r)
    for n in range(5):
        g = 0.0  # G[T] = 0
        for i in reversed(range(9)):
            g = r[n, i] + 0.99 * g
            expected[n, i] = g
    np.testing.assert_allclose(discounted_returns(r, 0.99), expected, rtol=1e-12)


# ---------------------------------------------------------------- batch normalization and clipping


def test_batch_normalize_over_everything():
    # values 1, 2, 3, 4: mean 2.5, std sqrt((2.25 + .25 + .25 + 2.25) / 4) = sqrt(1.25)
    out = batch_normalize(np.array([[1.0, 2.0], [3.0, 4.0]]))
    s = math.sqrt(1.25) + 1e-6
    np.testing.assert_allclose(out, [[-1.5 / s, -0.5 / s], [0.5 / s, 1.5 / s]])


def test_clip_advantages():
    out = clip_advantages(np.array([-7.0, -5.0, 0.3, 5.0, 6.0]), 5.0)
    np.testing.assert_array_equal(out, [-5.0, -5.0, 0.3, 5.0, 5.0])


# ---------------------------------------------------------------- the per-(prompt, step) tracker


def test_tracker_hand_worked_two_updates_and_fifo():
    tracker = StepStatTracker(buffer_size=4, min_count=3)

    # update 1: buffers a=[1,3], b=[5,7] hold 2 < 3 values -> batch stats of the step: mean 4, std sqrt(5)
    a1 = tracker.update(["a", "a", "b", "b"], np.array([[1.0], [3.0], [5.0], [7.0]]))
    np.testing.assert_allclose(a1[:, 0], [-3 / SQ5, -1 / SQ5, 1 / SQ5, 3 / SQ5])

    # update 2, G = [5, 7, 2, 100] for prompts a, a, b, c:
    #   a: buffer [1,3,5,7] (4 >= 3): mean 4, std sqrt(5)        -> (5-4)/sqrt5, (7-4)/sqrt5
    #   b: buffer [5,7,2]   (3 >= 3): mean 14/3, std sqrt(38/9)   -> (2 - 14/3) / 2.0548 = -1.2978
    #        (deviations 1/3, 7/3, -8/3: squares (1 + 49 + 64)/9 = 114/9, / 3 = 38/9)
    #   c: buffer [100]     (1 < 3):  batch step stats of [5,7,2,100]: mean 28.5,
    #        std sqrt((23.5^2 + 21.5^2 + 26.5^2 + 71.5^2) / 4) = sqrt(1707.25) -> 71.5 / 41.319 = 1.7304
    a2 = tracker.update(["a", "a", "b", "c"], np.array([[5.0], [7.0], [2.0], [100.0]]))
    expected = [1 / SQ5, 3 / SQ5, (2 - 14 / 3) / (math.sqrt(38 / 9) + 1e-6), 71.5 / (math.sqrt(1707.25) + 1e-6)]
    np.testing.assert_allclose(a2[:, 0], expected, rtol=1e-12)
    assert expected[2] == pytest.approx(-1.2978, abs=1e-4) and expected[3] == pytest.approx(1.7304, abs=1e-4)

    # update 3: a's buffer is full, so 1 and 3 are evicted: [5,7,9,11], mean 8, std sqrt(5)
    # (without eviction: [1,3,5,7,9,11], mean 6, would give (9-6)/3.4157 = 0.878 instead of 0.447)
    a3 = tracker.update(["a", "a"], np.array([[9.0], [11.0]]))
    np.testing.assert_allclose(a3[:, 0], [1 / SQ5, 3 / SQ5])
    state = tracker.state_dict()
    assert state["buffers"]["a"]["0"] == [5.0, 7.0, 9.0, 11.0]
    assert state["buffers"]["b"]["0"] == [5.0, 7.0, 2.0]
    assert state["buffers"]["c"]["0"] == [100.0]


def test_tracker_steps_are_separate_buckets():
    # T = 2; min_count 2 is reached in the first update. Step 0 of "a" holds [0, 2]: mean 1, std 1;
    # step 1 of "a" holds [10, 30]: mean 20, std 10. Each step is normalized by its own buffer.
    tracker = StepStatTracker(buffer_size=8, min_count=2)
    g = np.array([[0.0, 10.0], [2.0, 30.0], [50.0, 50.0], [70.0, 90.0]])
    adv = tracker.update(["a", "a", "b", "b"], g)
    d = 1 + 1e-6
    np.testing.assert_allclose(adv[:2], [[-1 / d, -10 / (10 + 1e-6)], [1 / d, 10 / (10 + 1e-6)]])
    # "b": step 0 [50, 70] mean 60 std 10; step 1 [50, 90] mean 70 std 20
    np.testing.assert_allclose(adv[2:], [[-10 / (10 + 1e-6), -20 / (20 + 1e-6)], [1, 1]], rtol=1e-6)
    assert tracker.state_dict()["buffers"]["a"] == {"0": [0.0, 2.0], "1": [10.0, 30.0]}


def test_tracker_below_min_count_uses_step_of_whole_batch():
    # min_count never reached; the step-0 stats come from all four rows, both prompts:
    # [1, 3, 5, 7] -> mean 4, std sqrt5; step 1 is [0, 0, 0, 4]: mean 1, std sqrt((1+1+1+9)/4) = sqrt3
    tracker = StepStatTracker(buffer_size=32, min_count=16)
    adv = tracker.update(["a", "b", "a", "b"], np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0], [7.0, 4.0]]))
    s3 = math.sqrt(3) + 1e-6
    np.testing.assert_allclose(adv, [[-3 / SQ5, -1 / s3], [-1 / SQ5, -1 / s3], [1 / SQ5, -1 / s3], [3 / SQ5, 3 / s3]])


def test_min_count_above_buffer_size_raises():
    with pytest.raises(ValueError, match="min_count"):
        StepStatTracker(buffer_size=4, min_count=5)


def _history(tracker: StepStatTracker, rng: np.random.Generator, rounds: int) -> None:
    prompts = ["cat", "dog", "cat", "owl", "dog", "cat"]
    for _ in range(rounds):
        tracker.update(prompts, rng.normal(size=(6, 3)))


@pytest.mark.parametrize("through_json", [False, True])
def test_state_dict_round_trip(through_json):
    rng = np.random.default_rng(3)
    original = StepStatTracker(buffer_size=5, min_count=3)
    _history(original, rng, rounds=4)  # "cat" buffers have overflowed, "owl" is still below min_count
    state = original.state_dict()
    if through_json:
        state = json.loads(json.dumps(state))
    restored = StepStatTracker(buffer_size=99, min_count=1)  # overwritten by the state
    restored.load_state_dict(state)
    assert restored.buffer_size == 5 and restored.min_count == 3
    assert restored.state_dict() == original.state_dict()
    for _ in range(3):  # identical advantages afterwards, including later FIFO evictions
        batch = rng.normal(size=(6, 3))
        prompts = ["owl", "cat", "cat", "dog", "owl", "emu"]
        np.testing.assert_array_equal(original.update(prompts, batch), restored.update(prompts, batch))
    assert all(len(b) <= 5 for steps in restored.buffers.values() for b in steps.values())


def test_state_dict_is_a_snapshot():
    tracker = StepStatTracker(buffer_size=4, min_count=2)
    tracker.update(["a"], np.array([[1.0]]))
    state = tracker.state_dict()
    tracker.update(["a"], np.array([[2.0]]))
    assert state["buffers"]["a"]["0"] == [1.0]


def test_tracker_rows_follow_the_reference_order():
    # 3 pairs, pairs 0-1 in shard 0 and pair 2 in shard 1; pair-major row b * 2 + p.
    # The reference gathers rank 0 then rank 1, each as [all first trajectories, all second ones]:
    #   shard 0: traj 1 of pairs 0, 1 -> rows 0, 2; traj 2 -> rows 1, 3;  shard 1: rows 4, then 5
    from learner.algo.advantages import tracker_rows

    assert tracker_rows(np.array([0, 0, 1])).tolist() == [0, 2, 1, 3, 4, 5]


def test_tracker_order_matters_once_a_buffer_wraps():
    """Buffer 2, min_count 1, one prompt, two pairs, T = 1: returns (pair, traj) = [[1, 2], [3, 4]].
    Reference order 1, 3, 2, 4: the FIFO keeps the last two, [2, 4] (mean 3, std 1), so the
    advantages are r - 3: [[-2, -1], [0, 1]]. Pair-major order 1, 2, 3, 4 would keep [3, 4]."""
    from learner.algo.advantages import normalized

    tracker = StepStatTracker(buffer_size=2, min_count=1)
    returns = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])  # (B=2, P=2, S=1)
    adv = normalized(returns, ["cat", "cat"], np.array([0, 0]), tracker)
    np.testing.assert_allclose(adv[:, :, 0], [[-2.0, -1.0], [0.0, 1.0]], atol=1e-5)
    assert list(tracker.buffers["cat"][0]) == [2.0, 4.0]

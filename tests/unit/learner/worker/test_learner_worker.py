"""The learner worker on the real tiny pipeline: exact ratio on the first pass, version checks,
that an update moves the LoRA weights in the direction the objective asks, that the micro-batch
size changes speed and not the math, and the N-shard update of one process."""

from __future__ import annotations

import pytest
import torch

from actors.config import ModelConfig, SamplingConfig
from actors.rollout_worker import RolloutWorker
from learner.worker.batch import ShardAdvantages, TrainBatch, UpdateRequest
from learner.worker.config import TrainConfig
from learner.worker.learner_worker import LearnerWorker, StalePolicyError
from tests.conftest import update_request

SAMPLING = SamplingConfig(num_steps=4)


@pytest.fixture(scope="module")
def workers(tiny_cache):
    model = ModelConfig(tiny_cache_dir=tiny_cache)
    learner = LearnerWorker(
        model=model, sampling=SAMPLING, train=TrainConfig(learning_rate=1e-2, gradient_accumulation_steps=2), seed=0
    )
    rollout = RolloutWorker(model=model, sampling=SAMPLING, seed=0)
    return learner, rollout


def _sample(learner, rollout, epoch, pairs=2):
    rollout.set_weights(learner.get_weights())
    prompts = ["cat", "dog", "owl", "fox"] * 4
    return rollout.rollout(epoch, list(range(pairs)), prompts[:pairs], learner.version).trajectories


def _better_first(pairs: int, steps: int = 4) -> torch.Tensor:
    """Advantages (B, P, T): trajectory 1 better at every step."""
    return torch.tensor([1.0, -1.0])[None, :, None].expand(pairs, 2, steps).contiguous()


def test_update_ratio_first_pass_is_one_and_version_increments(workers):
    learner, rollout = workers
    v0 = learner.version
    traj = _sample(learner, rollout, 0)
    metrics = learner.update(update_request(traj, _better_first(2)), traj)
    assert metrics["ratio_first_pass"] == 1.0
    assert metrics["backward_passes"] == 4  # T=4 steps x 1 minibatch of 2 pairs
    assert learner.version == v0 + 1 == metrics["policy_version"]
    assert learner.get_weights().version == v0 + 1
    assert metrics["busy_s"] > 0


def test_stale_batch_is_rejected(workers):
    learner, rollout = workers
    traj = _sample(learner, rollout, 1)
    with pytest.raises(StalePolicyError, match="expects data from policy version") as err:
        learner.update(update_request(traj, _better_first(2), version=learner.version - 1), traj)
    assert err.value.exit_code == 1


def test_update_raises_the_log_prob_of_the_better_trajectory(workers):
    learner, rollout = workers
    batch = _sample(learner, rollout, 2)  # trajectory 1 has the higher advantage at every step
    learner.update(update_request(batch, _better_first(2)), batch)
    rollout.set_weights(learner.get_weights())
    # recompute log-probs of the same actions under the new policy
    from actors.policy import encode_prompts
    from actors.sampling import score_steps

    pipe = rollout.pipe
    embeds = encode_prompts(pipe, batch.prompts).repeat_interleave(2, dim=0)
    diffs = []
    for i in range(4):
        x, x_next = batch.latents[:, :, i].flatten(0, 1), batch.latents[:, :, i + 1].flatten(0, 1)
        with torch.no_grad():
            lp = score_steps(pipe.unet, pipe.scheduler, x, x_next, torch.full((4,), i), batch.timesteps, embeds, 1.0)
        lp = lp.log_prob.view(2, 2)
        rho = lp - batch.log_probs[:, :, i]
        diffs.append((rho[:, 0] - rho[:, 1]).mean())
    assert torch.stack(diffs).mean() > 0


def _fresh(tiny_cache, **train) -> LearnerWorker:
    cfg = TrainConfig(learning_rate=1e-2, clip_range=1e-2, **train)
    return LearnerWorker(model=ModelConfig(tiny_cache_dir=tiny_cache), sampling=SAMPLING, train=cfg, seed=0)


@pytest.fixture(scope="module")
def eight_pairs(workers):
    learner, rollout = workers
    rollout.set_weights(learner.get_weights())  # any policy samples fine data
    traj = rollout.rollout(7, list(range(8)), ["cat", "dog", "owl", "fox"] * 2, rollout.version).trajectories
    adv = torch.randn(8, 2, 4, generator=torch.Generator().manual_seed(1)).clamp(-5, 5)
    return traj, adv


def test_micro_batch_size_changes_speed_not_the_math(tiny_cache, eight_pairs):
    """batch 2 x accumulation 4 = 8 (pair, step) samples per optimizer step, in backward passes of 2
    pairs or of 8 pairs: the same samples share each step, so the parameters agree to float tolerance."""
    traj, adv = eight_pairs
    results = {}
    for micro in (2, 8):
        # adam_epsilon large next to the gradients: AdamW's first steps are otherwise ~lr * sign(g), which
        # turns float summation-order noise in a near-zero gradient into a full step
        learner = _fresh(
            tiny_cache, batch_size=2, gradient_accumulation_steps=4, micro_batch_size=micro, adam_epsilon=1e-2
        )
        request = update_request(traj, adv, version=0)
        metrics = learner.update(request, traj)
        results[micro] = (metrics, learner.get_weights().lora)
    (m2, w2), (m8, w8) = results[2], results[8]
    assert m2["backward_passes"] == 16 and m8["backward_passes"] == 4  # 8 pairs x T=4 steps / micro
    assert m2["grad_norm"] == pytest.approx(m8["grad_norm"], rel=1e-4)
    moved = 0.0
    for key, value in w8.items():
        torch.testing.assert_close(value, w2[key], rtol=1e-4, atol=1e-6)  # steps of ~1e-2: float32 noise only
        moved += float((value - traj_free_init(tiny_cache)[key]).abs().sum())
    assert moved > 0  # the four optimizer steps changed the LoRA


def test_skip_last_step_never_trains_on_the_last_transition(tiny_cache, eight_pairs):
    """train.skip_last_step: the last step's advantages cannot change the update (its items are not
    scheduled: 8 pairs x 3 steps in passes of 8), while with all T steps they do."""
    traj, adv = eight_pairs
    other = adv.clone()
    other[:, :, -1] = -other[:, :, -1] + 3.0  # different advantages at step T-1 only

    def updated(skip: bool, advantages: torch.Tensor):
        learner = _fresh(
            tiny_cache, batch_size=2, gradient_accumulation_steps=4, micro_batch_size=8, skip_last_step=skip
        )
        metrics = learner.update(update_request(traj, advantages, version=0), traj)
        return metrics, learner.get_weights().lora

    (m, w), (_, w_other) = updated(True, adv), updated(True, other)
    assert m["backward_passes"] == 3  # 24 items, 8 per optimizer step and per pass
    assert all(torch.equal(w[k], w_other[k]) for k in w)
    (_, w_all), (_, w_all_other) = updated(False, adv), updated(False, other)
    assert not all(torch.equal(w_all[k], w_all_other[k]) for k in w_all)


_INIT: dict = {}


def traj_free_init(tiny_cache) -> dict:
    if not _INIT:
        _INIT.update(_fresh(tiny_cache).get_weights().lora)
    return _INIT


def test_uneven_shards_of_one_process(tiny_cache, eight_pairs):
    """Two shards in one process (what an in-process run of a 2-rank layout computes), one of them
    short of a pair (a dropped reward): shard 0 has 4 pairs x T=4 = 16 items, shard 1 has 12; with
    batch 2 x accumulation 2 = 4 items per step, both walk ceil(16 / 4) = 4 optimizer steps, in
    16 / 2 + 12 / 2 = 14 backward passes. (That it equals N ranks is tests/e2e/learner/worker/test_distributed.py.)"""
    traj, adv = eight_pairs
    shards = [ShardAdvantages(0, torch.arange(4), adv[:4]), ShardAdvantages(1, torch.tensor([4, 5, 7]), adv[[4, 5, 7]])]
    learner = _fresh(tiny_cache, gradient_accumulation_steps=2)
    metrics = learner.update(UpdateRequest(0, 7, 2, 4, shards), traj)
    assert metrics["backward_passes"] == 14 and learner.version == 1


def test_missing_trajectories_are_an_error(tiny_cache, eight_pairs):
    traj, adv = eight_pairs
    request = update_request(traj, adv, version=0)
    with pytest.raises(ValueError, match="no trajectories for pairs"):
        _fresh(tiny_cache).update(request, traj.select(torch.arange(4)))


def test_train_batch_validate():
    good = TrainBatch(
        0, 0, 0, ["a"], torch.arange(3), torch.zeros(1, 2, 4, 4, 2, 2), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3)
    )
    good.validate()
    with pytest.raises(ValueError, match="advantages"):
        TrainBatch(
            0, 0, 0, ["a"], torch.arange(3), torch.zeros(1, 2, 4, 4, 2, 2), torch.zeros(1, 2, 3), torch.zeros(1, 2, 2)
        ).validate()
    with pytest.raises(ValueError, match="finite"):
        TrainBatch(
            0,
            0,
            0,
            ["a"],
            torch.arange(3),
            torch.zeros(1, 2, 4, 4, 2, 2),
            torch.zeros(1, 2, 3),
            torch.full((1, 2, 3), float("nan")),
        ).validate()


def test_a_rewound_worker_runs_an_update_again_exactly(tiny_cache):
    """keep_epoch_states: the state at each of the last two versions; rewinding to one (twice, to show
    the kept copy is not stepped in place) and updating again gives the same weights and metrics."""
    model = ModelConfig(tiny_cache_dir=tiny_cache)
    learner = LearnerWorker(
        model=model, sampling=SAMPLING, train=TrainConfig(learning_rate=1e-2), seed=0, keep_epoch_states=True
    )
    rollout = RolloutWorker(model=model, sampling=SAMPLING, seed=0)
    for epoch in range(2):
        traj = _sample(learner, rollout, epoch)
        learner.update(update_request(traj, _better_first(2)), traj)
    assert sorted(learner.epoch_states) == [1, 2] and learner.epoch_state(0) is None and not learner.rewind(0)
    traj = _sample(learner, rollout, 2)
    first = learner.update(update_request(traj, _better_first(2)), traj)
    after = learner.get_weights().lora
    for _ in range(2):
        assert learner.rewind(2) and learner.version == 2
        again = learner.update(update_request(traj, _better_first(2)), traj)
        assert {k: again[k] for k in ("loss", "approx_kl", "grad_norm")} == {
            k: first[k] for k in ("loss", "approx_kl", "grad_norm")
        }
        assert all(torch.equal(after[k], v) for k, v in learner.get_weights().lora.items())
    other = LearnerWorker(
        model=model, sampling=SAMPLING, train=TrainConfig(learning_rate=1e-2), seed=0
    )  # a restarted rank
    assert other.epoch_states is None and other.rewind(3, learner.epoch_state(3)) and other.version == 3
    assert all(torch.equal(after[k], v) for k, v in other.get_weights().lora.items())

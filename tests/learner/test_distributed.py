"""A data-parallel learner group: N=2 ranks as real Ray actors on CPU with gloo. The LoRA gradients
are all-reduced (parameters identical on both ranks after a step), and the result equals one
learner with N x batch_size on the whole batch, up to float reduction order."""

from __future__ import annotations

import pytest
import ray
import torch

from actors.config import ModelConfig, SamplingConfig
from actors.rollout_worker import RolloutWorker
from learner.batch import TrainBatch
from learner.config import TrainConfig
from learner.distributed import Rank
from learner.launch import LearnerGroup, get
from learner.learner_worker import LearnerWorker

pytestmark = pytest.mark.e2e
SAMPLING = SamplingConfig(num_steps=3)
TRAIN = dict(learning_rate=1e-2, gradient_accumulation_steps=2, clip_range=1e-2)


def test_rank_shard_takes_its_slice():
    idx = torch.arange(8)
    assert Rank(0, 2).shard(idx, 4).tolist() == [0, 1, 2, 3]
    assert Rank(1, 2).shard(idx, 4).tolist() == [4, 5, 6, 7]


@pytest.fixture(scope="module")
def batch(tiny_cache) -> TrainBatch:
    model = ModelConfig(tiny_cache_dir=tiny_cache)
    reference = LearnerWorker(model, SAMPLING, TrainConfig(**TRAIN), seed=0)
    rollout = RolloutWorker(model, SAMPLING, seed=0)
    rollout.set_weights(reference.get_weights())
    b = rollout.rollout(0, [0, 1, 2, 3], ["cat", "dog", "owl", "fox"], 0)
    adv = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0)).clamp(-5, 5)
    return TrainBatch(0, 0, b.prompts, b.timesteps, b.latents, b.log_probs, adv)


def test_two_ranks_equal_one_learner_on_the_whole_batch(tiny_cache, batch):
    model = ModelConfig(tiny_cache_dir=tiny_cache)
    single = LearnerWorker(model, SAMPLING, TrainConfig(batch_size=4, **TRAIN), seed=0)
    single_metrics = single.update(batch)
    expected = single.get_weights().lora

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        cls = ray.remote(LearnerWorker).options(num_cpus=0.5)
        ranks = [cls.remote(model, SAMPLING, TrainConfig(batch_size=2, **TRAIN), 0, rank=i, world_size=2) for i in range(2)]
        address = ray.get(ranks[0].rendezvous.remote())
        assert ray.get([r.join_group.remote(address) for r in ranks]) == [0, 1]
        group = LearnerGroup(ranks)
        metrics = get(group.update.remote(batch))
        weights = ray.get([r.get_weights.remote() for r in ranks])
    finally:
        ray.shutdown()

    assert weights[0].version == weights[1].version == 1
    for key, value in weights[0].lora.items():
        assert torch.equal(value, weights[1].lora[key]), key  # all-reduced: identical on both ranks
        assert torch.allclose(value, expected[key], rtol=1e-4, atol=1e-6), key  # = one learner, batch 4
    moved = sum((expected[k] - weights[0].lora[k]).abs().sum() for k in expected)
    assert any(v.abs().sum() > 0 for k, v in expected.items() if "lora_B" in k)  # the step changed B
    assert moved < 1e-3 * sum(v.abs().sum() for v in expected.values())
    assert metrics["backward_passes"] == single_metrics["backward_passes"] == 3  # T=3 x 1 global minibatch
    assert metrics["loss"] == pytest.approx(single_metrics["loss"], rel=1e-4)


def test_cli_run_with_a_two_rank_learner_group(tiny_cache, tmp_path):
    from learner.outputs import read_metrics
    from tests.conftest import run_cli

    res = run_cli(
        "--epochs", "2", "--run-dir", str(tmp_path / "run"), f"model.tiny_cache_dir={tiny_cache}", "ray.num_cpus=2",
        "learner.num_workers=2", "learner.num_cpus=0.25", "rollout.pairs_per_epoch=4", "rollout.chunk_size=2",
        "sampling.num_steps=3", "train.batch_size=2",
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    metrics = read_metrics(tmp_path / "run")
    assert [m["weights_version"] for m in metrics] == [0, 1]
    assert all(m["backward_passes"] == 3 for m in metrics)  # T=3 x one global minibatch of 2 x 2 pairs

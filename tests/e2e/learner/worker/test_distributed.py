"""A data-parallel learner group: N=2 ranks as real Ray actors on CPU with gloo, each training its
own shard of the pairs. The LoRA gradients are all-reduced (parameters identical on both ranks after
a step), and the result equals one process computing both shards' update (what an in-process run
does), up to float reduction order."""

from __future__ import annotations

import pytest
import ray
import torch

from actors.config import ModelConfig, SamplingConfig
from actors.rollout_worker import RolloutWorker
from learner.driver.launch import RankGroup
from learner.worker.batch import ShardAdvantages, UpdateRequest
from learner.worker.config import TrainConfig
from learner.worker.learner_worker import LearnerWorker
from plumbing.remote import get

SAMPLING = SamplingConfig(num_steps=3)
TRAIN = TrainConfig(learning_rate=1e-2, gradient_accumulation_steps=2, clip_range=1e-2, adam_epsilon=1e-2)


@pytest.fixture(scope="module")
def data(tiny_cache):
    model = ModelConfig(tiny_cache_dir=tiny_cache)
    rollout = RolloutWorker(model=model, sampling=SAMPLING, seed=0)
    rollout.set_weights(LearnerWorker(model=model, sampling=SAMPLING, train=TRAIN, seed=0).get_weights())
    traj = rollout.rollout(0, [0, 1, 2, 3], ["cat", "dog", "owl", "fox"], 0).trajectories
    adv = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0)).clamp(-5, 5)
    shards = [ShardAdvantages(r, traj.pair_index[2 * r : 2 * r + 2], adv[2 * r : 2 * r + 2]) for r in range(2)]
    return model, traj, shards


@pytest.mark.usefixtures("ray_cluster")
def test_two_ranks_equal_one_process_with_two_shards(data):
    model, traj, shards = data
    single = LearnerWorker(model=model, sampling=SAMPLING, train=TRAIN, seed=0)
    single_metrics = single.update(UpdateRequest(0, 0, 2, 2, shards), traj)
    expected = single.get_weights().lora

    cls = ray.remote(LearnerWorker).options(num_cpus=0.5)
    ranks = [cls.remote(model=model, sampling=SAMPLING, train=TRAIN, seed=0, rank=i, world_size=2) for i in range(2)]
    address = ray.get(ranks[0].rendezvous.remote())
    assert ray.get([r.join_group.remote(address) for r in ranks]) == [0, 1]
    # each rank gets only its own shard's trajectories
    calls = [
        rank.update.remote(UpdateRequest(0, 0, 2, 2, [shards[r]]), traj.select(torch.arange(2 * r, 2 * r + 2)))
        for r, rank in enumerate(ranks)
    ]
    metrics = ray.get(calls)
    weights = get(RankGroup(ranks).get_weights.remote())
    weights = [weights, ray.get(ranks[1].get_weights.remote())]

    assert weights[0].version == weights[1].version == 1
    for key, value in weights[0].lora.items():
        assert torch.equal(value, weights[1].lora[key]), key  # all-reduced: identical on both ranks
        torch.testing.assert_close(value, expected[key], rtol=1e-4, atol=1e-6)  # = one process, both shards
    assert any(v.abs().sum() > 0 for k, v in expected.items() if "lora_B" in k)  # the step changed B
    # each rank: 2 pairs x T=3 / micro 2 = 3 passes, summed over the ranks like the one process's both shards: 6
    assert metrics[0]["backward_passes"] == metrics[1]["backward_passes"] == single_metrics["backward_passes"] == 6
    assert metrics[0]["loss"] == pytest.approx(single_metrics["loss"], rel=1e-4)  # averaged over the ranks


def test_cli_run_with_a_two_rank_learner_group(tiny_cache, tmp_path):
    from learner.run.outputs import read_metrics
    from tests.conftest import run_args, run_cli

    res = run_cli(
        *run_args(tmp_path / "run", tiny_cache, 2),
        "ray.num_cpus=2",
        "learner.num_workers=2",
        "learner.num_cpus=0.25",
        "rollout.pairs_per_epoch=4",
        "rollout.chunk_size=2",
        "sampling.num_steps=3",
        "train.batch_size=2",
        "eval.enabled=false",
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    metrics = read_metrics(tmp_path / "run")
    assert [m["weights_version"] for m in metrics] == [0, 1]
    assert all(m["backward_passes"] == 6 for m in metrics)  # 2 ranks x T=3 x one minibatch of their 2 pairs

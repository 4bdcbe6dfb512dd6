"""Pairs -> shards -> ranks: the one rule the driver's stages share (learner.driver.stages.ShardPlan)."""

from __future__ import annotations

from learner.driver.stages import ShardPlan


def test_contiguous_shards_and_their_ranks_by_hand():
    on_ray = ShardPlan(pairs_per_epoch=8, num_shards=2, num_ranks=2)
    assert on_ray.shard(range(8)).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [on_ray.rank_of_pair(p) for p in (0, 3, 4, 7)] == [0, 0, 1, 1]
    in_process = ShardPlan(pairs_per_epoch=8, num_shards=2, num_ranks=1)  # one learner computes both shards
    assert in_process.shard([3, 4]).tolist() == [0, 1] and [in_process.rank(s) for s in (0, 1)] == [0, 0]
    four = ShardPlan(pairs_per_epoch=12, num_shards=4, num_ranks=4)
    assert four.shard([0, 2, 3, 11]).tolist() == [0, 0, 1, 3] and four.rank_of_pair(11) == 3

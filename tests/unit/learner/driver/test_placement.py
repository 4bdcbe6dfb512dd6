"""Resource planning before any actor starts: one bundle per actor, and a clear error naming the
shortfall when the cluster can never hold them (instead of waiting forever)."""

from __future__ import annotations

import pytest

from learner.config import load_config
from learner.driver.placement import ResourceError, actor_bundles, check_resources


def test_one_bundle_per_actor_in_launch_order():
    cfg = load_config("tiny", ["learner.num_workers=2", "learner.num_cpus=0.25"])
    bundles = actor_bundles(cfg)
    # 2 rollout actors (0.5 CPU), 1 reward server (0.25 CPU), 2 learner ranks (0.25 CPU); no GPU keys on CPU
    assert bundles == [{"CPU": 0.5}] * 2 + [{"CPU": 0.25}] + [{"CPU": 0.25}] * 2


def test_colocated_preset_fits_one_gpu():
    cfg = load_config("sd_turbo_colocated")
    gpus = sum(b.get("GPU", 0) for b in actor_bundles(cfg))
    assert gpus == pytest.approx(1.0) and cfg.ray.placement_strategy == "STRICT_PACK"
    check_resources(actor_bundles(cfg), [{"CPU": 16, "GPU": 1}])  # a single-GPU workstation holds it


def test_paper_preset_fits_four_gpus():
    bundles = actor_bundles(load_config("sd_turbo_aesthetic"))
    # hybrid: 4 policy workers x 0.9 + reward 0.1 = 3.7 GPUs in total
    assert sum(b.get("GPU", 0) for b in bundles) == pytest.approx(3.7)
    check_resources(bundles, [{"CPU": 8, "GPU": 1}] * 4)  # four single-GPU nodes hold it
    with pytest.raises(ResourceError, match=r"GPU: need 3.7, cluster has 3"):
        check_resources(bundles, [{"CPU": 64, "GPU": 3}])


def test_disaggregated_preset_needs_five_and_a_quarter_gpus():
    bundles = actor_bundles(load_config("sd_turbo_disaggregated"))
    # 4 rollout x 1 + learner 1 + reward 0.25 = 5.25 GPUs in total
    assert sum(b.get("GPU", 0) for b in bundles) == pytest.approx(5.25)
    with pytest.raises(ResourceError, match=r"GPU: need 5.25, cluster has 4"):
        check_resources(bundles, [{"CPU": 64, "GPU": 4}])


def test_an_actor_larger_than_every_node_is_refused():
    cfg = load_config("tiny", ["rollout.num_gpus=2"])
    with pytest.raises(ResourceError, match=r"one actor needs GPU: 2, the largest node has 1"):
        check_resources(actor_bundles(cfg), [{"CPU": 8, "GPU": 1}] * 4)  # 4 GPUs in total, 1 per node


def test_cpu_only_cluster_refuses_gpu_actors_naming_the_shortfall():
    cfg = load_config("tiny", ["learner.num_gpus=1"])
    with pytest.raises(ResourceError) as err:
        check_resources(actor_bundles(cfg), [{"CPU": 2}])
    assert "GPU: need 1, cluster has 0" in str(err.value)


def test_tiny_default_fits_two_cores():
    bundles = actor_bundles(load_config("tiny"))
    assert sum(b["CPU"] for b in bundles) <= 2 and not any("GPU" in b for b in bundles)
    check_resources(bundles, [{"CPU": 2}])  # raises if it could not


def test_bundles_are_named_by_role():
    from learner.driver.placement import bundle_indices, role_bundles

    cfg = load_config(
        "tiny", ["rollout.num_actors=2", "reward.num_servers=1", "learner.num_workers=2", "learner.num_cpus=0.75"]
    )
    assert bundle_indices(cfg) == {"rollout": [0, 1], "reward": [2], "learner": [3, 4]}
    flat = actor_bundles(cfg)
    for role, indices in bundle_indices(cfg).items():  # each role's actors sit on their own role's bundles
        assert [flat[i] for i in indices] == role_bundles(cfg)[role]
    assert flat[3] == {"CPU": 0.75}

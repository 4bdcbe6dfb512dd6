"""Placement: one resource bundle per actor, by role (rollout actors, reward servers, learner ranks,
in that order), the check that a cluster can ever hold them, and the placement group that holds them."""

from __future__ import annotations

from learner.config import Config
from plumbing.errors import UsageError


class ResourceError(UsageError):
    """The cluster can never satisfy the requested resources (exit 2)."""


ROLES = ("rollout", "reward", "learner")  # the order of the roles' bundles in the placement group


def role_bundles(cfg: Config) -> dict[str, list[dict[str, float]]]:
    """One resource bundle per actor, by role: rollout actors, reward servers, learner ranks."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner

    def bundle(cpus: float, gpus: float) -> dict[str, float]:
        return {"CPU": cpus, "GPU": gpus} if gpus > 0 else {"CPU": cpus}

    return {
        "rollout": [bundle(r.num_cpus, r.num_gpus)] * r.num_actors,
        "reward": [bundle(w.num_cpus, w.num_gpus)] * w.num_servers,
        "learner": [bundle(lrn.num_cpus, lrn.num_gpus)] * lrn.num_workers,
    }


def actor_bundles(cfg: Config) -> list[dict[str, float]]:
    """Every actor's bundle, the roles in ROLES order: the placement group's bundle list."""
    return [b for bundles in role_bundles(cfg).values() for b in bundles]


def bundle_indices(cfg: Config) -> dict[str, list[int]]:
    """Role -> the placement-group bundle index of each of its actors (actor i of a role: index [i])."""
    out, start = {}, 0
    for role, bundles in role_bundles(cfg).items():
        out[role], start = list(range(start, start + len(bundles))), start + len(bundles)
    return out


def check_resources(bundles: list[dict[str, float]], nodes: list[dict[str, float]]) -> None:
    """Raise ResourceError naming the shortfall if the cluster (`nodes`: each alive node's resources)
    can never hold the actors' `bundles`: not in total, or some actor on no single node."""
    short = []
    for key in ("CPU", "GPU"):
        need, have = sum(b.get(key, 0.0) for b in bundles), sum(n.get(key, 0.0) for n in nodes)
        if need > have + 1e-9:
            short.append(f"{key}: need {need:g}, cluster has {have:g}")
    biggest = {key: max((n.get(key, 0.0) for n in nodes), default=0.0) for key in ("CPU", "GPU")}
    for b in {tuple(sorted(b.items())) for b in bundles}:
        for key, amount in b:
            if amount > biggest[key] + 1e-9:
                short.append(f"one actor needs {key}: {amount:g}, the largest node has {biggest[key]:g}")
    if short:
        raise ResourceError("the Ray cluster can never satisfy the requested resources (" + "; ".join(short) + ")")


def bundle_node_ip(pg, bundle: int) -> str:
    """The address of the node that holds bundle `bundle` of placement group `pg`."""
    import ray
    from ray.util.placement_group import placement_group_table

    node_id = placement_group_table(pg)["bundles_to_node_id"][bundle]
    return next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)


def place_bundles(bundles: list[dict[str, float]], strategy: str, timeout_s: float):
    """A placement group of `bundles`, or ResourceError if Ray cannot place it in `timeout_s`."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group(bundles, strategy=strategy)
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        total = {k: sum(b.get(k, 0.0) for b in bundles) for k in ("CPU", "GPU")}
        raise ResourceError(
            f"Ray could not place the actors' {len(bundles)} resource bundles ({total}) with strategy {strategy} "
            f"within {timeout_s:g}s; the cluster has {ray.available_resources()} free"
        )
    return pg

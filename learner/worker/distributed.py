"""Data parallelism for a group of N learner workers (torch.distributed: NCCL on GPU, gloo on CPU).

Rank r trains shard r of the epoch's pairs with its own step-shuffled schedule (as each of the
reference's GPUs trains the pairs it sampled); gradients are averaged over ranks right before each
optimizer step, and every rank takes the same number of optimizer steps. One process given all N
shards computes the same update (learner.worker.learner_worker). No ray import here.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def free_port() -> int:
    """A free TCP port on this host, for rank 0 to host the rendezvous on."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_group(rank: Rank, address: str, device: str, timeout_s: float = 300) -> None:
    from datetime import timedelta

    backend = "nccl" if device == "cuda" else "gloo"
    torch.distributed.init_process_group(
        backend,
        init_method=f"tcp://{address}",
        rank=rank.rank,
        world_size=rank.world_size,
        timeout=timedelta(seconds=timeout_s),
    )


def leave_group() -> None:
    """Destroy this process's group, if it has one (also after a collective failed on a lost member)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def average_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """All-reduce (mean) the gradients of `params` over the group, as one flat buffer."""
    for p in params:  # a rank with no items left in this step still joins the all-reduce
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_scalars(values: dict[str, float], device: str = "cpu") -> dict[str, float]:
    """Mean of each metric over the ranks (the same keys on every rank)."""
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    t /= torch.distributed.get_world_size()
    return dict(zip(keys, t.tolist()))

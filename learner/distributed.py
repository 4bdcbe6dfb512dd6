"""Data parallelism for a group of N learner workers (torch.distributed: NCCL on GPU, gloo on CPU).

Every rank builds the same step-shuffled schedule of GLOBAL minibatches of N x batch_size pairs and
takes its own slice of each; gradients are averaged over ranks right before each optimizer step.
The mean of the ranks' minibatch losses is then the loss of the global minibatch, so N ranks take
exactly the optimizer steps one learner with batch_size x N would (up to float reduction order).
No ray import here.
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

    def shard(self, global_index: torch.Tensor, per_rank: int) -> torch.Tensor:
        """This rank's slice of a global minibatch (rank r takes items [r*per_rank, (r+1)*per_rank))."""
        return global_index[self.rank * per_rank : (self.rank + 1) * per_rank]


def free_address() -> tuple[str, int]:
    """An address of this host and a free TCP port, for rank 0 to host the rendezvous on."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    try:
        import ray

        host = ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
    except ImportError:
        host = "127.0.0.1"
    return host, port


def init_group(rank: Rank, address: str, device: str, timeout_s: float = 300) -> None:
    from datetime import timedelta

    backend = "nccl" if device == "cuda" else "gloo"
    torch.distributed.init_process_group(
        backend, init_method=f"tcp://{address}", rank=rank.rank, world_size=rank.world_size,
        timeout=timedelta(seconds=timeout_s),
    )


def average_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """All-reduce (mean) the gradients of `params` over the group, as one flat buffer."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
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

"""The hybrid layout's worker: one per GPU, it samples with the very UNet it trains, so a new policy
version needs no weight copy at all, and the trajectories it samples stay where they are trained.
It is a LearnerWorker rank (data-parallel group) with a RolloutWorker's sampling methods on the
same pipeline. A plain class; ``ray.remote`` is applied where it is launched."""

from __future__ import annotations

import numpy as np

from actors.batch import RolloutBatch, Trajectories
from actors.rollout_worker import RolloutWorker
from learner.worker.batch import UpdateRequest
from learner.worker.fault_injection import kill_point
from learner.worker.learner_worker import LearnerWorker


class PolicyWorker(LearnerWorker):
    def __init__(self, *, rollout_threads: int = 1, **learner_args):
        super().__init__(**learner_args)
        self.sampler = RolloutWorker(
            model=None,
            sampling=self.sampling,
            seed=self.seed,
            device=self.device,
            torch_threads=rollout_threads,
            pipe=self.pipe,
            peak_tflops=self.train.peak_tflops,
        )
        self.held: list[Trajectories] = []  # this epoch's trajectories, until its update

    def rollout(self, epoch: int, pair_indices: list[int], prompts: list[str], version: int) -> RolloutBatch:
        """Sample as a RolloutWorker does, with this worker's current policy; keep the trajectories
        for the update and return only the sparse queries."""
        if not any(t.epoch == epoch for t in self.held):
            kill_point("rollout", epoch, self.rank.rank)
        self.sampler.version = self.version  # the sampler's policy IS this worker's UNet
        self.held = [t for t in self.held if t.epoch == epoch]  # an abandoned epoch's leftovers go
        batch = self.sampler.rollout(epoch, pair_indices, prompts, version)
        self.held.append(batch.trajectories)
        return RolloutBatch(batch.queries, None)

    def rewind(self, version: int, state: dict | None = None) -> bool:
        self.held = []  # the epoch runs again: its trajectories are sampled again
        return super().rewind(version, state)

    def evaluate(self, prompts: list[str], seeds: list[int], num_steps: int) -> np.ndarray:
        return self.sampler.evaluate(prompts, seeds, num_steps)

    def update(self, request: UpdateRequest, *trajectories: Trajectories) -> dict[str, float]:
        held, self.held = [t for t in self.held if t.epoch == request.epoch], []
        return super().update(request, *trajectories, *held)

"""The learner's workers: the LearnerWorker (LoRA UNet, AdamW, the update loop), its data-parallel
group (torch.distributed), the hybrid PolicyWorker that samples with the same UNet it trains, and
the typed batches a learner rank receives.

May import: ``learner.algo``, ``learner.config`` sections, ``plumbing``, ``actors`` (policy, sampling, batches).
Never imports ray or ``learner.driver`` / ``learner.run``.
"""

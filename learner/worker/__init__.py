"""The learner's workers: the LearnerWorker (LoRA UNet, AdamW, the update loop), its data-parallel
group (torch.distributed), the hybrid PolicyWorker that samples with the same UNet it trains, and
the typed batches a learner rank receives.

``config`` holds the section the workers consume (``train``); it imports only the section base.

May import: ``learner.algo``, ``plumbing``, ``actors`` (policy, sampling, batches).
Never imports ray, ``learner.config`` or ``learner.driver`` / ``learner.run``.
"""

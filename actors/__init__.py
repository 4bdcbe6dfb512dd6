"""The policy side of SDPO and the plumbing every worker shares (the bottom layer of the project):
the DDIM and flow-SDE policy steps, dual-state pair sampling, the latent-similarity predictor (anchors
and the dense reward fill), the model families (``actors.families``: SD, SDXL, SD3 pipelines with
LoRA), the rollout worker and its typed batches, calling
workers on Ray or in-process (``actors.remote``), seeds, and the error hierarchy (``actors.errors``).

May import: nothing else of the project. Ray only in ``actors.remote``, and only when a Ray object
is handled.
"""

"""The policy side of SDPO: the DDIM, flow-SDE and sCM policy steps, dual-state pair sampling, the
latent-similarity predictor (anchors and the dense reward fill), the model families
(``actors.families``: SD, SDXL, SD3, FLUX, FLUX.2 klein and SANA-Sprint pipelines with LoRA, and
tiny builds of them for tests), loading the policy (``actors.policy``), prompts, the rollout worker
and its typed batches.

May import: ``plumbing`` (errors, remote calls, seeds, console, the config base) and ``shapes`` (the
committed shapes models and captions). Never ``rewards`` or ``learner``, and never Ray.
"""

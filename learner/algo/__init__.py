"""The algorithm, pure torch/numpy: advantages (returns, the per-(prompt, step) stat tracker), the
SDPO and DDPO objectives, the step-shuffled update schedule, and the registry that maps an
algorithm's name to its advantage function and its loss.

May import: the pure modules ``actors.similarity``, ``plumbing.seeds`` and ``plumbing.errors``.
Never imports ray, diffusers, transformers or any other ``learner`` sub-package.
"""

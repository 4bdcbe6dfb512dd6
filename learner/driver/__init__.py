"""The driver: the epoch loop and its stages, launching workers on Ray (or in-process), handing out
rollout chunks and surviving rollout-actor failures, the held-out evaluation, checkpoint/resume on
the driver's side, and what a failure or a signal means for the run. ``config`` holds the sections the
driver consumes (``learner``, ``ray``, ``eval``, ``monitor``); it imports only the section base.

May import everything below it: ``learner.algo``, ``learner.worker``, ``learner.run``, ``learner.config``,
``plumbing``, ``shapes``, ``actors``, ``rewards``. Only the commands import the driver: ``learner.main``
(the training job) and ``learner.evaluate`` (evaluating a LoRA with the same actors); and the
benchmarks that measure its parts. (``learner.config`` imports its ``config`` module alone, to compose
the tree.)
"""

"""The SDPO learner, by role: ``algo`` (the algorithm, pure torch/numpy), ``worker`` (the learner
and hybrid policy workers and their data-parallel group), ``run`` (what a run leaves on disk),
``driver`` (the epoch loop, launching, dispatch, evaluation, faults), and ``main`` (the CLI).
Each keeps the config sections it consumes in its own ``config`` module; ``config`` composes them
and the other packages' into the one tree and loads it.

Imports point one way: algo -> worker -> driver -> main (run beside worker, below driver). The
learner may import ``plumbing``, ``shapes``, ``actors`` and ``rewards``; they never import it.
"""

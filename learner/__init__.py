"""The SDPO learner, by role: ``algo`` (the algorithm, pure torch/numpy), ``worker`` (the learner
and hybrid policy workers and their data-parallel group), ``run`` (what a run leaves on disk),
``driver`` (the epoch loop, launching, dispatch, evaluation, faults), and ``main`` (the CLI).
``config`` composes every package's config section into the one tree.

Imports point one way: algo -> worker -> driver -> main (run beside worker, below driver). The
learner may import ``plumbing``, ``shapes``, ``actors`` and ``rewards``; they never import it.
"""

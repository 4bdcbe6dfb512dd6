"""What a run leaves on disk: checkpoints (atomic, checksummed), metrics.jsonl, TensorBoard
events, sample and evaluation grids, reward curves.

May import: ``plumbing``, ``actors`` (LoRA file format) and ``learner.config``. Never imports ray or the other
``learner`` sub-packages.
"""

"""What a run leaves on disk: checkpoints (atomic, checksummed), metrics.jsonl, TensorBoard
events, sample and evaluation grids, reward curves. ``config`` holds the sections of what a run writes
(``output``, ``checkpoint``); it imports only the section base.

May import: ``plumbing``, ``actors`` (LoRA file format) and ``learner.config`` (the model card reads the
whole tree). Never imports ray or the other ``learner`` sub-packages.
"""

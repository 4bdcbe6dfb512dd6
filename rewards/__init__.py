"""Rewards for SDPO: the reward registry and the reward models, the reward server (one Ray actor per
server) and the driver's client of the server pool (``rewards.pool``).

May import: ``actors`` (its errors and remote-call plumbing). Never imports ``learner``. Ray only in
``rewards.pool``, where servers are called.
"""

"""Rewards for SDPO: the reward registry and the reward models, the reward server (one Ray actor per
server) and the driver's client of the server pool (``rewards.pool``).

May import: ``plumbing`` (errors, remote calls, the console, the config base) and ``shapes`` (the
shapes reward's model, served as ``shapes_classifier``). Never imports ``actors`` or ``learner``. Ray
only in ``rewards.pool``, where servers are called.
"""

"""Rollout side of SDPO: the DDIM policy, dual-state pair sampling and the rollout worker.

Nothing in this package imports ``learner``; Ray is only imported where workers are launched.
"""

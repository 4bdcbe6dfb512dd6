"""Rewards for SDPO: the reward registry, the reward-server pool and the latent-similarity predictor.

Nothing in this package imports ``learner``; Ray is only imported where servers are launched.
"""

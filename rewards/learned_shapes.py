"""`shapes_classifier`: the learned reward of the embedded shapes task, registered by name. The model
and its scoring live with the task (shapes/net.py, shapes/reward.py); this module is the registry's
entry for them. It scores how well an image shows its caption: the mean over the chosen factors (by
default colour, shape, size and position) of the probability a CNN trained on the dataset gives the
stated value, in [0, 1]. `factors` picks the factors, e.g. "colour,shape,size": the shapes presets
leave out position, which the shapes models do not control (the initial noise decides it; docs/shapes.md)."""

from __future__ import annotations

from rewards.registry import RewardFn, register_reward


@register_reward("shapes_classifier", needs="nothing (weights committed under shapes/assets/shapes-classifier)")
def shapes_classifier(
    device: str = "cpu", weights: str | None = None, factors: str | list[str] | None = None
) -> RewardFn:
    """Options: weights = directory holding model.safetensors (default: the committed one); factors =
    the factors averaged, a list or a comma-separated string of colour, shape, size, position (default: all four)."""
    from shapes.reward import scorer

    return scorer(device, weights, factors)

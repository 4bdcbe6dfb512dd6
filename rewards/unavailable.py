"""ImageReward: registered so that its name is known, but it cannot be built yet.

Its published package cannot be installed beside this project's torch and transformers (details and
the way forward in rewards/README.md). Building it raises a RuntimeError that says why. (HPSv2 used
to be here too; it now runs natively, see rewards/hpsv2.py.)
"""

from __future__ import annotations

from typing import Any

from rewards.registry import RewardFn, register_reward

_WHY = {
    "imagereward": (
        "the `image-reward` 1.5 package imports apply_chunking_to_forward, find_pruneable_heads_and_indices "
        "and prune_linear_layer from transformers.modeling_utils (gone in transformers 5), pins timm==0.6.13 "
        "and fairscale, and needs torchvision (pip would replace torch)"
    ),
}


def _unavailable(name: str):
    def factory(device: str = "cpu", **options: Any) -> RewardFn:
        raise RuntimeError(f"the '{name}' reward is not available in this build: {_WHY[name]}. See rewards/README.md.")

    factory.__name__ = name
    return factory


register_reward("imagereward", needs="unavailable: the image-reward package conflicts with transformers 5 (rewards/README.md)")(
    _unavailable("imagereward")
)

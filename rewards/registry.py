"""Rewards looked up by name.

A reward is built by a factory ``factory(device: str, **options) -> RewardFn`` and a RewardFn maps
``(images uint8 (N, H, W, 3) numpy, prompts list[str] of N) -> scores float (N,) numpy``.
Factories are registered with ``@register_reward(name, needs=...)``; building one that is not
registered raises an error listing the valid names.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from plumbing.errors import UsageError


class RewardFn(Protocol):
    def __call__(self, images: np.ndarray, prompts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class RewardSpec:
    name: str
    factory: Callable[..., RewardFn]
    needs: str  # one line: what the reward needs (model files, packages), shown by `python -m rewards list`


_REGISTRY: dict[str, RewardSpec] = {}


class UnknownRewardError(UsageError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_reward(name: str, needs: str = "nothing (offline)") -> Callable:
    def deco(factory: Callable[..., RewardFn]) -> Callable[..., RewardFn]:
        if name in _REGISTRY:
            raise ValueError(f"reward '{name}' is registered twice")
        _REGISTRY[name] = RewardSpec(name, factory, needs)
        return factory

    return deco


# The built-in rewards are plug-ins like a user's (`reward.modules`): loaded by name on first use, so
# the registry itself depends on none of them. None imports torch or transformers at import time.
BUILTIN_MODULES = (
    "rewards.aesthetic",
    "rewards.hpsv2",
    "rewards.hpsv3",
    "rewards.imagereward",
    "rewards.jpeg",
    "rewards.pickscore",
    "rewards.learned_shapes",
)


def _load_builtin() -> None:
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def import_reward_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import user modules that register their own rewards with @register_reward."""
    import importlib

    for module in modules:
        if module.startswith("."):
            raise UnknownRewardError(
                f"reward.modules: '{module}' is a relative module name; give its full dotted name (e.g. "
                "mypkg.my_reward)"
            )
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UnknownRewardError(f"reward.modules: cannot import '{module}': {err}") from None
        except SyntaxError as err:
            raise UnknownRewardError(
                f"reward.modules: '{module}' has a syntax error: {err.msg} ({err.filename}, line {err.lineno})"
            ) from None
        except Exception as err:  # noqa: BLE001  (the module's own code raised: its traceback goes above the line)
            import traceback

            traceback.print_exc()
            raise UnknownRewardError(
                f"reward.modules: importing '{module}' raised {type(err).__name__}: {err}"
            ) from None


def reward_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def reward_spec(name: str) -> RewardSpec:
    _load_builtin()
    if name not in _REGISTRY:
        raise UnknownRewardError(f"unknown reward '{name}'; valid rewards: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def reward_options(name: str) -> list[str] | None:
    """The keyword options a reward's factory accepts besides `device` (None: it takes any)."""
    params = inspect.signature(reward_spec(name).factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "device"]


class RewardOptionError(UsageError):
    """An option the reward's factory does not take."""


def check_options(name: str, options: dict[str, Any]) -> None:
    """RewardOptionError naming the unknown options of reward `name` and its valid ones."""
    valid = reward_options(name)
    unknown = [] if valid is None else sorted(set(options) - set(valid))
    if unknown:
        raise RewardOptionError(f"reward '{name}' has no option(s) {unknown}; its options: {valid or 'none'}")


def build_reward(name: str, device: str = "cpu", **options: Any) -> RewardFn:
    check_options(name, options)
    return reward_spec(name).factory(device=device, **options)

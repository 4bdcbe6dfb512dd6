"""The files of a published reward model, shared by the HPSv2 and ImageReward loaders: where its
checkpoint is (a local file, or the release file downloaded from the hub), reading that checkpoint
safely as a state dict of tensors (a .safetensors file, or a torch.save'd file through
torch.load(weights_only=True): a flat state dict, or a dict with a "state_dict" entry), and reading a
JSON model config (a file, or a directory holding it)."""

from __future__ import annotations

import json
import os
from typing import Any


def checkpoint_file(checkpoint: str | None, what: str, reward: str, repo: str, filename: str, cli: str) -> str:
    """`checkpoint` if given (it must exist), else `filename` of hub repo `repo` (cached by
    huggingface_hub). `what` names the model and `reward` the reward in errors; `cli` is how the
    rewards CLI passes a checkpoint."""
    if checkpoint is not None:
        path = os.path.expanduser(str(checkpoint))
        if not os.path.isfile(path):
            raise ValueError(f"{what} checkpoint file not found: {checkpoint}")
        return path
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo, filename)
    except Exception as err:  # offline, no network, gated: say what to do instead
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"the '{reward}' reward needs {filename} (hub repo {repo}) and could not download it: {first}; "
            f"download it and pass checkpoint=PATH (CLI: {cli})"
        ) from None


def read_json_config(config: str, filename: str, not_found: str) -> Any:
    """The JSON in file `config`, or in `config`/`filename` when it is a directory; `not_found` is
    the error's text when there is no such file."""
    path = os.path.expanduser(str(config))
    if os.path.isdir(path):
        path = os.path.join(path, filename)
    if not os.path.isfile(path):
        raise ValueError(not_found)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_state_dict(path: str, what: str) -> dict[str, "torch.Tensor"]:  # noqa: F821
    """`what` names the model in error messages, e.g. 'HPSv2'."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and others: a message, not the unpickler's traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read {what} checkpoint {path} with torch.load(weights_only=True): {first}. If it holds Python "
            "objects besides tensors and you trust the file, load it once in full (torch's weights_only=False) "
            "and save its 'state_dict' alone with torch.save, then pass that file as checkpoint"
        ) from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{what} checkpoint {path} is not a state dict (nor a dict with a 'state_dict' entry of tensors)"
        )
    return state

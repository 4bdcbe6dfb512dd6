"""The files of a published reward model, shared by the HPSv2, HPSv3 and ImageReward loaders: where its
checkpoint is (a local file, or the release file downloaded from the hub), reading that checkpoint
safely as a state dict of tensors (a .safetensors file, or a torch.save'd file through
torch.load(weights_only=True), memory-mapped when it is zip-format: a flat state dict, or a dict holding
it under an entry such as "state_dict"), reading a JSON model config (a file, or a directory holding
it), and what every loader checks before the weights go in: the keys (none missing, none left over)
and the shapes, with errors naming them; and a context that builds the empty transformers module
without random initialization (the checkpoint's weights replace it)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


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


def read_state_dict(path: str, what: str, entries: tuple[str, ...] = ("state_dict",)) -> dict[str, "torch.Tensor"]:
    """The tensors of checkpoint file `path`: a .safetensors file, or a torch.save'd one (flat, or a dict
    whose entry `entries[0]` holds it, then `entries[1]` within that, ...). `what` names the model in
    errors, e.g. 'HPSv2'."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip-format file: no mmap
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and others: a message, not the unpickler's traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read {what} checkpoint {path} with torch.load(weights_only=True): {first}. If it holds Python "
            "objects besides tensors and you trust the file, load it once in full (torch's weights_only=False) "
            "and save its 'state_dict' alone with torch.save, then pass that file as checkpoint"
        ) from None
    for entry in entries:
        if isinstance(ckpt, dict) and isinstance(ckpt.get(entry), dict):
            ckpt = ckpt[entry]
    if not isinstance(ckpt, dict) or not ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        under = " or ".join(repr(e) for e in entries)
        raise ValueError(f"{what} checkpoint {path} is not a state dict of tensors (flat, or under {under})")
    return ckpt


def check_keys(missing: list[str], unused: list[str], problem: str) -> None:
    """Raise ValueError "`problem`: missing key(s): ...; unused key(s): ..." (20 of each at most) if a
    checkpoint key the model needs is missing or one it holds is left over."""
    parts = [
        f"{name} key(s): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
        for name, keys in (("missing", missing), ("unused", unused))
        if keys
    ]
    if parts:
        raise ValueError(f"{problem}: {'; '.join(parts)}")


def check_shapes(state: dict[str, "torch.Tensor"], own: dict[str, "torch.Tensor"], problem: str) -> None:
    """Raise ValueError "`problem`: KEY (shape) (expected (shape)), ..." (10 at most) if a tensor of
    `state` does not have the shape of the model's own tensor `own[KEY]`."""
    wrong = [
        f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in state.items() if v.shape != own[k].shape
    ]
    if wrong:
        raise ValueError(f"{problem}: {', '.join(wrong[:10])}")


def no_init_weights() -> Any:
    """A context in which transformers builds a module without random initialization (the checkpoint's
    weights are loaded next); a no-op context where transformers has no such switch."""
    import contextlib

    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # 4.x
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()

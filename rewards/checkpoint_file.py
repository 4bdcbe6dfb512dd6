"""Reading a published reward-model checkpoint as a state dict of tensors, safely: a .safetensors
file, or a torch.save'd file through torch.load(weights_only=True) (a flat state dict, or a dict with
a "state_dict" entry). Shared by the HPSv2 and ImageReward loaders."""

from __future__ import annotations


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
        raise ValueError(f"{what} checkpoint {path} is not a state dict (nor a dict with a 'state_dict' entry of tensors)")
    return state

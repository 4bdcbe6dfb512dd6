"""Model families: what a diffusers pipeline class needs to be an SDPO policy (load with LoRA,
encode prompts into the denoiser's conditioning, one denoiser call, the stochastic step with its
log-prob and predicted clean sample, the deterministic evaluation step, decoding, LoRA files).
The rollout workers and the learner's rescoring call the same family code, so their log-probs agree
bit for bit. A family is chosen by the model's model_index.json `_class_name`, or by model.family.

May import: actors (config, errors, the ddim, flow_sde and scm step math). diffusers, transformers and
peft only inside the functions that need them.
"""

from __future__ import annotations

import torch

from actors.families.base import (
    Conditioning,
    ModelFamily,
    ModelLoadError,
    PolicyStep,
    cat_rows,
    expand_rows,
    repeat_rows,
    select_rows,
)
from actors.families.flux import Flux
from actors.families.flux2_klein import Flux2Klein
from actors.families.sana_sprint import SanaSprint
from actors.families.sd import StableDiffusion
from actors.families.sd3 import StableDiffusion3
from actors.families.sdxl import StableDiffusionXL
from plumbing.errors import UsageError

FAMILIES: dict[str, ModelFamily] = {
    f.name: f for f in (StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux(), Flux2Klein(), SanaSprint())
}
_BY_PIPELINE = {f.pipeline_class: f for f in FAMILIES.values()}

__all__ = [
    "FAMILIES",
    "Conditioning",
    "ModelFamily",
    "ModelLoadError",
    "PolicyStep",
    "cat_rows",
    "expand_rows",
    "family_named",
    "family_of",
    "family_of_lora_state",
    "family_of_pipeline_class",
    "repeat_rows",
    "select_rows",
    "supported",
]


def supported() -> str:
    return ", ".join(f"{f.pipeline_class} ({f.name})" for f in FAMILIES.values())


def family_named(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise UsageError(f"model.family: unknown family '{name}'; valid names: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_pipeline_class(class_name: object, where: str) -> ModelFamily:
    """The family of a model_index.json `_class_name`; anything else is a UsageError naming the supported ones."""
    if class_name not in _BY_PIPELINE:
        raise ModelLoadError(
            f"model.pretrained: '{where}' is a {class_name or 'pipeline without a _class_name'}, which cannot be "
            f"trained; supported pipelines: {supported()} (or set model.family)"
        )
    return _BY_PIPELINE[class_name]


def family_of(pipe) -> ModelFamily:
    """The family of a loaded pipeline (by its class)."""
    return family_of_pipeline_class(type(pipe).__name__, type(pipe).__name__)


def family_of_lora_state(state: dict[str, torch.Tensor]) -> ModelFamily:
    """The family whose LoRA file format a peft state of a denoiser needs: a transformer's blocks sit
    at the top level, a UNet's under down/mid/up blocks. SD and SDXL write one UNet format, SD3, FLUX,
    FLUX.2 and SANA-Sprint one transformer format (peft names under `transformer.`; FLUX.2 LoRAs may adapt its
    single-stream blocks alone)."""
    transformer = any(k.startswith(("transformer_blocks.", "single_transformer_blocks.")) for k in state)
    return FAMILIES["sd3"] if transformer else FAMILIES["sd"]

"""Every model family at its real size, built from the published architecture configs with random
weights: no download. The numbers of parameters and FLOPs are the real models', the weights are not.
`scale` < 1 shrinks widths (channels, hidden sizes, head counts, the text encoders' head sizes) and depths
by that factor for CPU tests; the classes, the config keys and every code path stay the real ones.

    python -m benchmarks.real_size --family sd --out DIR [--dtype float16] [--device cuda] [--scale 1] [--no-t5]
    python -m benchmarks.real_size --count                  # denoiser parameters at scale 1, on the meta device

A saved directory loads through the project's normal path (`model.pretrained=DIR`); `build()` returns
the pipeline in memory, built directly on its device and dtype (a 12B transformer never exists in
float32 or on the CPU), for the benchmarks that skip the save.
The architectures, written out from the published configs: benchmarks/real_configs.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.real_configs import FAMILIES, PUBLISHED_DENOISER_PARAMS, configs, tokenizers

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _scheduler(family: str):
    import diffusers

    if family == "sd":  # SD-Turbo's betas; the family builds its DDIM policy scheduler from this config
        return diffusers.DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            timestep_spacing="trailing",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
    from actors.families.tiny import published_scheduler

    return published_scheduler(family)


def _model(class_name: str, kwargs: dict) -> torch.nn.Module:
    import diffusers
    import transformers

    if hasattr(diffusers, class_name):
        return getattr(diffusers, class_name)(**kwargs)
    config = getattr(transformers, class_name).config_class(**kwargs)
    return getattr(transformers, class_name)(config)


@contextmanager
def _built_on(device: str | torch.device, dtype: torch.dtype):
    """Parameters created directly on `device` in `dtype` (no float32 or CPU copy of a large model)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build(
    family: str,
    scale: float = 1.0,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    t5: bool = True,
    seed: int = 0,
):
    """The family's diffusers pipeline with random weights, in memory, built on `device` in `dtype`.
    `t5=False` (sd3 only) builds SD3 without its T5 encoder (text_encoder_3 = None)."""
    import diffusers

    from actors.families import FAMILIES as POLICIES
    from plumbing.console import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory() as work:
        tok = tokenizers(family, Path(work), t5)
    torch.manual_seed(seed)
    parts = {}
    with _built_on(device, dtype):
        for name, (cls, kwargs) in configs(family, scale, tok, t5).items():
            module = _model(cls, kwargs).eval()
            if any(
                p.dtype != dtype for p in module.parameters()
            ):  # buffers keep the dtype they were made in, as from_pretrained leaves them
                module.to(dtype)
            parts[name] = module
    if family == "sd3" and not t5:
        parts["text_encoder_3"] = None
    extra = (
        {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} if family == "sd" else {}
    )
    if family == "flux2_klein":
        extra = {"is_distilled": True}  # FLUX.2-klein-4B is step-distilled (model_index.json)
    pipeline = getattr(diffusers, POLICIES[family].pipeline_class)
    return pipeline(**parts, **tok, scheduler=_scheduler(family), **extra)


def save(pipe, directory: str | Path) -> Path:
    directory = Path(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_saved(family: str, directory: str | Path, scale: float = 1.0, **kwargs) -> Path:
    """Build (see `build`) and save_pretrained to `directory`: loadable as `model.pretrained=DIR`."""
    return save(build(family, scale, **kwargs), directory)


def param_counts(family: str, scale: float = 1.0, t5: bool = True) -> dict[str, int]:
    """Parameters of every model in the pipeline, counted on the meta device (nothing is allocated)."""
    with tempfile.TemporaryDirectory() as work:
        tok = tokenizers(family, Path(work), t5)
    counts = {}
    with torch.device("meta"):
        for name, (cls, kwargs) in configs(family, scale, tok, t5).items():
            counts[name] = sum(p.numel() for p in _model(cls, kwargs).parameters())
    return counts


def denoiser_name(family: str) -> str:
    return "unet" if family in ("sd", "sdxl") else "transformer"


def build_sd_turbo_sized(directory: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """The SD-Turbo-sized pipeline saved to `directory` (benchmarks/sd_turbo_config.py's historical entry point)."""
    return build_saved("sd", directory, dtype=dtype)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real_size", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--family",
        choices=FAMILIES,
        action="append",
        help="family to build or count (repeatable; --count: default all)",
    )
    p.add_argument("--out", help="save the built pipeline here (save_pretrained): load it with model.pretrained=DIR")
    p.add_argument("--scale", type=float, default=1.0, help="width and depth factor (1 = the real size)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--device", default="cpu", help="build on this device (cuda for the real sizes)")
    p.add_argument("--no-t5", action="store_true", help="sd3: without the T5 encoder")
    p.add_argument(
        "--count", action="store_true", help="print parameter counts (meta device, nothing allocated) as JSON and exit"
    )
    args = p.parse_args(argv)
    if not 0 < args.scale <= 1:
        p.error("--scale must be in (0, 1]")
    if args.count:
        out = {}
        for fam in args.family or FAMILIES:
            counts = param_counts(fam, args.scale, t5=not args.no_t5)
            published, source = PUBLISHED_DENOISER_PARAMS[fam]
            out[fam] = {
                "params": counts,
                "denoiser": counts[denoiser_name(fam)],
                "published_denoiser": published,
                "source": source,
            }
        print(json.dumps(out))
        return 0
    if not args.family or len(args.family) != 1 or not args.out:
        p.error("building needs one --family and --out")
    path = build_saved(
        args.family[0], args.out, args.scale, device=args.device, dtype=DTYPES[args.dtype], t5=not args.no_t5
    )
    print(json.dumps({"family": args.family[0], "scale": args.scale, "dtype": args.dtype, "path": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

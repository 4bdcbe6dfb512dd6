"""The model card of a trained LoRA: <run_dir>/lora/README.md, in the format diffusers' training
scripts write (their model-card template and metadata: library diffusers, base_model, tags), so the
folder can be uploaded to a model hub as it is. It records how the LoRA was made (base model, LoRA
rank, reward, algorithm, epochs and optimizer steps), the initial policy's and the final held-out
evaluation at each step count with the change, the evaluation grid beside it (evaluation.png), and
a snippet that loads the base model from where it really is and generates with the LoRA, with
diffusers alone."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from learner.config import Config

_EVAL_KEY = re.compile(r"^eval_(.+)_(\d+)step_mean$")


def eval_table(metrics: dict) -> str:
    """The final evaluation as a markdown table: one row per step count, one column per measure
    (`eval_<measure>_<k>step_mean`, with its std where recorded)."""
    found: dict[int, dict[str, str]] = {}
    for key, value in metrics.items():
        m = _EVAL_KEY.match(key)
        if m and isinstance(value, (int, float)):
            measure, k = m.group(1), int(m.group(2))
            std = metrics.get(f"eval_{measure}_{k}step_std")
            found.setdefault(k, {})[measure] = f"{value:.4f}" + (
                f" ± {std:.4f}" if isinstance(std, (int, float)) else ""
            )
    if not found:
        return "No held-out evaluation was recorded (eval.enabled is false)."
    measures = sorted({m for row in found.values() for m in row})
    lines = ["| steps | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(found[k].get(m, "") for m in measures) + " |" for k in sorted(found)]
    return "\n".join(lines)


def change_table(initial: dict, final: dict) -> str:
    """Initial and final held-out means per step count and measure, with the change (final - initial)."""
    rows = []
    for key in sorted(
        final,
        key=lambda k: (
            (_EVAL_KEY.match(k).group(1), int(_EVAL_KEY.match(k).group(2))) if _EVAL_KEY.match(k) else ("", 0)
        ),
    ):
        m = _EVAL_KEY.match(key)
        if m and isinstance(final[key], (int, float)) and isinstance(initial.get(key), (int, float)):
            rows.append(
                f"| {m.group(1)} | {m.group(2)} | {initial[key]:.4f} | {final[key]:.4f} | "
                f"{final[key] - initial[key]:+.4f} |"
            )
    if not rows:
        return ""
    return "\n".join(["| measure | steps | initial policy | after training | change |", "|---|---|---|---|---|", *rows])


def base_model_location(cfg: Config) -> str:
    """What `from_pretrained` takes to load the base model: the hub id, or the local directory it
    resolves to (the committed shapes pipelines, the tiny model's cache)."""
    from actors.policy import resolve_model_path

    if hub_base_model(cfg.model.pretrained):
        return cfg.model.pretrained
    return str(Path(resolve_model_path(cfg.model)).resolve())


def example_prompt(cfg: Config) -> str:
    """A prompt of the run's own task: the first held-out evaluation prompt, else the first training prompt."""
    from actors.prompts import load_prompts

    for source in (cfg.eval.prompts, cfg.prompts.source):
        try:
            prompts = load_prompts(source)
        except Exception:  # noqa: BLE001  (a card is written after training; any readable list will do)
            continue
        if prompts:
            return prompts[0]
    return "a photo of a cat"


def hub_base_model(pretrained: str) -> str | None:
    """The base model's hub id for the card's metadata; None for a local directory or the embedded model."""
    if pretrained.startswith((".", "/", "~")) or Path(pretrained).exists() or "/" not in pretrained:
        return None
    return pretrained


def card_text(
    cfg: Config, metrics: dict, epochs_trained: int, has_grid: bool, initial: dict | None = None, lora_ref: str = "lora"
) -> str:
    m, t, s = cfg.model, cfg.train, cfg.sampling
    reward = (
        cfg.reward.name
        if cfg.reward.name != "weighted"
        else " + ".join(f"{w:g} x {n}" for n, w in sorted(cfg.reward.weights.items()))
    )
    steps = epochs_trained * cfg.optimizer_steps_per_epoch
    grid = (
        "\n![held-out evaluation](evaluation.png)\n\nRows: the step counts above, in order (for each, the initial "
        "policy's row first where shown); columns: held-out prompts; the same initial noise in every row.\n"
        if has_grid
        else ""
    )
    changes = change_table(initial or {}, metrics)
    changes = (
        f"\nAgainst the initial policy (the base model; the same prompts and noises):\n\n{changes}\n" if changes else ""
    )
    base, prompt = base_model_location(cfg), example_prompt(cfg)
    k = min(cfg.eval.steps)
    trained = (
        f"{epochs_trained} epochs x {cfg.rollout.pairs_per_epoch} trajectory pairs of {s.num_steps} steps "
        f"(eta {s.eta:g}); {steps} optimizer steps"
    )
    optimizer = (
        f"learning rate {t.learning_rate:g}, clip range {t.clip_range:g}, "
        f"{cfg.samples_per_optimizer_step} (pair, timestep) samples per step"
    )
    evaluated = (
        f"Deterministic sampling (eta = 0) of the held-out prompts (`{cfg.eval.prompts}`) after the last epoch; "
        "mean ± std over prompts."
    )
    guidance = s.guidance_scale if s.guidance_scale > 1 else 0.0
    return f"""# {cfg.algorithm.upper()} LoRA for {m.pretrained}

LoRA adapters for the denoiser of `{m.pretrained}`, fine-tuned with {cfg.algorithm.upper()}
(Stepwise Diffusion Policy Optimization, arXiv 2411.11727) to raise the `{reward}` reward at every
number of sampling steps.

## Training

| | |
|---|---|
| algorithm | {cfg.algorithm} |
| base model | `{m.pretrained}` |
| reward | `{reward}` |
| LoRA | rank {m.lora_rank}, alpha {m.lora_alpha:g}, on {", ".join(m.lora_target_modules)} |
| trained | {trained} |
| optimizer | {optimizer} |
| seed | {cfg.seed} |

## Held-out evaluation

{evaluated}

{eval_table(metrics)}
{changes}{grid}
## Use

The base model `{m.pretrained}` is loaded from `{base}`, the LoRA from `{lora_ref}`:

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{base}")  # the pipeline class named in its model_index.json
pipe.load_lora_weights("{lora_ref}")
image = pipe("{prompt}", num_inference_steps={k}, guidance_scale={guidance:g}).images[0]
image.save("sample.png")
```
"""


def write_model_card(
    lora_dir: Path, cfg: Config, metrics: dict, epochs_trained: int, eval_grid: Path | None, initial: dict | None = None
) -> Path:
    """Write lora_dir/README.md (and lora_dir/evaluation.png from `eval_grid`, if it exists)."""
    from diffusers.utils.hub_utils import MODEL_CARD_TEMPLATE_PATH, populate_model_card
    from huggingface_hub import ModelCard, ModelCardData

    has_grid = eval_grid is not None and eval_grid.exists()
    if has_grid:
        shutil.copy2(eval_grid, lora_dir / "evaluation.png")
    card = ModelCard.from_template(
        card_data=ModelCardData(
            library_name="diffusers", base_model=hub_base_model(cfg.model.pretrained), inference=True
        ),
        template_path=MODEL_CARD_TEMPLATE_PATH,
        model_description=card_text(
            cfg, metrics, epochs_trained, has_grid, initial, cfg.output.push_to_hub or str(Path(lora_dir).resolve())
        ),
    )
    populate_model_card(
        card,
        tags=["text-to-image", "diffusers", "lora", "diffusers-training", cfg.algorithm, f"reward-{cfg.reward.name}"],
    )
    path = lora_dir / "README.md"
    card.save(path)
    return path


def finish_lora(run_dir: Path, cfg: Config, epochs_trained: int) -> Path:
    """After the LoRA is saved in run_dir/lora: its model card, from the last evaluation in
    metrics.jsonl; then the upload when output.push_to_hub names a repo. Returns the card's path."""
    from learner.run.hub import push_folder
    from learner.run.outputs import eval_grid_path, read_metrics

    evaluated = [r for r in read_metrics(run_dir) if any(_EVAL_KEY.match(k) for k in r)]
    last = evaluated[-1] if evaluated else {}
    grid = eval_grid_path(run_dir, last["epoch"]) if last else None
    initial_path = run_dir / "eval" / "initial.json"
    try:
        initial = json.loads(initial_path.read_text()) if initial_path.is_file() else None
    except (OSError, ValueError):
        initial = None  # a damaged file only costs the card its comparison
    card = write_model_card(run_dir / "lora", cfg, last, epochs_trained, grid, initial)
    if cfg.output.push_to_hub:
        message = f"{cfg.algorithm.upper()} LoRA: {run_dir.name}, {epochs_trained} epochs"
        url = push_folder(run_dir / "lora", cfg.output.push_to_hub, cfg.output.hub_private, message)
        print(f"uploaded {run_dir / 'lora'} to {url}", flush=True)
    return card

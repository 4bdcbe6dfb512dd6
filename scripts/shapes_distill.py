"""Distil the pretrained shapes model into a few-step student, as SD-Turbo is a distilled SD: its
1-step sample is close to the teacher's many-step sample, and it stays good at 2, 4 and 8 steps.

    python -m scripts.shapes_distill            # writes shapes/assets/shapes-turbo
    python -m scripts.shapes_distill --out /tmp/turbo --pairs-per-prompt 2 --steps 20   # a quick try

Method (trajectory regression, a CPU-sized cousin of consistency distillation; Luhman & Luhman 2021
regress noise -> sample at t = 999 alone, this extends it to every t):
  1. teacher  for every training caption c and noise n (N(0, I), fixed seeds), the teacher's
              deterministic DDIM chain of TEACHER_STEPS steps gives its sample x0*(n, c). The
              teacher is the committed `shapes` pipeline (shapes/assets/shapes-sd); the
              held-out captions are never used.
  2. path     the DDIM path of a perfect few-step sampler from n to x0*: the noise that path implies,
              e* = (n - sqrt(a_999) x0*) / sqrt(1 - a_999), gives x_t = sqrt(a_t) x0* + sqrt(1 - a_t) e*
              for every t; x_999 = n. Deterministic DDIM with a student that returns x0* from every
              x_t on this path lands on x0* after 1, 2, 4 or 8 steps alike.
  3. student  the teacher's UNet, fine-tuned so that its x0 prediction from (x_t, t, c) is x0*:
              L = max(SNR(t), 1) * |x0_theta(x_t, t, c) - x0*|^2 (x0 loss where the noise dominates,
              epsilon loss where the signal does; Salimans & Ho 2022's truncated SNR weighting),
              t uniform on 0..999 with probability 1 - P_FIRST, else t = 999 (the 1-step sample).
              The teacher's own chain states (x_t of its DDIM steps, the same target) are mixed in
              with probability P_CHAIN, so the student is also right off the straight path.
  4. save     the teacher's pipeline with the student's UNet (VAE, text encoder, tokenizer and
              scheduler unchanged), then the held-out check of scripts.shapes_pretrain (1/2/4/8/50 steps).

Runs on ONE CPU thread and is deterministic, like scripts.shapes_pretrain: the same torch build on the
same CPU rebuilds the same bytes.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import torch

from scripts.shapes_pretrain import log, write_check
from shapes import ASSETS
from shapes.data import train_prompts

DEFAULT_OUT = ASSETS / "shapes-turbo"
TEACHER = ASSETS / "shapes-sd"
TEACHER_STEPS = 20
P_FIRST = 0.25
P_CHAIN = 0.25
NOISE_SEED = 1


def load_teacher(directory: Path):
    from actors.config import ModelConfig
    from actors.policy import load_pipeline

    return load_pipeline(ModelConfig(pretrained=str(directory), local_files_only=True), with_lora=False)


@torch.no_grad()
def teacher_chains(pipe, prompts: list[str], per_prompt: int, steps: int, chunk: int, logfile):
    """The teacher's deterministic chains: noises (N, C, h, w), chain states (N, steps, C, h, w) at
    the timesteps (steps,), final samples x0* (N, C, h, w), caption index (N,)."""
    from actors.families import family_of

    fam = family_of(pipe)
    gen = torch.Generator().manual_seed(NOISE_SEED)
    caption = torch.arange(len(prompts)).repeat_interleave(per_prompt)  # (N,)
    noise = torch.randn((len(caption), 4, 16, 16), generator=gen)
    embeds = fam.encode_prompts(pipe, prompts)  # (P, L, D)
    timesteps = fam.set_timesteps(pipe.scheduler, steps)
    states, finals = [], []
    for start in range(0, len(caption), chunk):
        x, idx = noise[start : start + chunk], caption[start : start + chunk]
        chain = []
        for i, t in enumerate(timesteps):
            chain.append(x)
            out = fam.denoise(pipe.unet, x, t.expand(len(x)), embeds[idx], 1.0, None)
            x, x0 = fam.step(pipe.scheduler, out, x, torch.full((len(x),), i), timesteps)
        states.append(torch.stack(chain, dim=1))
        finals.append(x0)
        log(logfile, f"teacher samples {start + len(x)}/{len(caption)}")
    return noise, torch.cat(states), timesteps, torch.cat(finals), caption


def train_student(unet, embeds, noise, states, chain_t, target, caption, alphas, args, gen, logfile) -> None:
    """Fine-tune `unet` (epsilon prediction) so that its x0 prediction is the teacher's sample."""
    a999 = alphas[999]
    path_eps = (noise - a999.sqrt() * target) / (1 - a999).sqrt()  # e*, (N, C, h, w)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    unet.train()
    running = None
    for step in range(args.steps):
        n = torch.randint(0, len(noise), (args.batch,), generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        t = torch.where(torch.rand(args.batch, generator=gen) < P_FIRST, torch.full_like(t, 999), t)
        a = alphas[t].view(-1, 1, 1, 1)
        x = a.sqrt() * target[n] + (1 - a).sqrt() * path_eps[n]  # the straight path
        on_chain = torch.rand(args.batch, generator=gen) < P_CHAIN
        k = torch.randint(0, states.shape[1], (args.batch,), generator=gen)
        t = torch.where(on_chain, chain_t[k], t)
        x = torch.where(on_chain.view(-1, 1, 1, 1), states[n, k], x)
        a = alphas[t].view(-1, 1, 1, 1)
        eps = unet(x, t, embeds[caption[n]]).sample
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        weight = (a / (1 - a)).clamp(min=1.0)  # max(SNR, 1)
        loss = torch.mean(weight * (x0 - target[n]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps - 1:
            log(logfile, f"student step {step} loss {running:.5f} lr {sched.get_last_lr()[0]:.2e}")
    unet.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output pipeline directory (replaced)")
    parser.add_argument("--teacher", default=str(TEACHER), help="the teacher pipeline directory")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the training draws")
    parser.add_argument("--pairs-per-prompt", type=int, default=24, help="teacher samples per training caption")
    parser.add_argument("--teacher-steps", type=int, default=TEACHER_STEPS)
    parser.add_argument("--steps", type=int, default=2000, help="student optimizer steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--log", default=None, help="also append progress lines to this file")
    parser.add_argument(
        "--check-per-prompt", type=int, default=8, help="held-out samples per prompt in the final check (0: none)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    logfile = Path(args.log) if args.log else None
    start = time.process_time()

    pipe = load_teacher(Path(args.teacher))
    prompts = train_prompts()
    noise, states, chain_t, target, caption = teacher_chains(
        pipe, prompts, args.pairs_per_prompt, args.teacher_steps, 256, logfile
    )
    from actors.families import family_of

    embeds = family_of(pipe).encode_prompts(pipe, prompts)  # (P, L, D), frozen
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    unet = pipe.unet
    unet.requires_grad_(True)
    alphas = pipe.scheduler.alphas_cumprod.float()
    train_student(unet, embeds, noise, states, chain_t, target, caption, alphas, args, gen, logfile)
    unet.requires_grad_(False)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(args.teacher, out, ignore=shutil.ignore_patterns("training_check.json", "unet"))
    unet.register_to_config(
        _name_or_path=f"{Path(args.teacher).name}/unet"
    )  # not this machine's path: the rebuild is byte for byte anywhere
    unet.save_pretrained(out / "unet", safe_serialization=True)
    write_check(out, "distill", time.process_time() - start, args.check_per_prompt, logfile)


if __name__ == "__main__":
    main()

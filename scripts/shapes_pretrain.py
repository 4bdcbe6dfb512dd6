"""Pretrain the tiny shapes text-to-image model and save it as a diffusers StableDiffusionPipeline.

    python -m scripts.shapes_pretrain                      # writes shapes/assets/shapes-sd
    python -m scripts.shapes_pretrain --out /tmp/shapes-sd --vae-steps 200 --unet-steps 200   # a quick try

Runs on ONE CPU thread (torch.set_num_threads(1)) and is deterministic: the same torch build on the
same CPU rebuilds the same bytes (see docs/shapes.md for the command's CPU time and what else is
reproducible). Stages:
  1. data     the 120 training prompts x IMAGES_PER_PROMPT images (shapes.data, seed DATA_SEED);
              the held-out prompts are never seen.
  2. VAE      AutoencoderKL 32x32x3 <-> 4x16x16 (one 2x downsampling): L = MSE(x_hat, x) + KL_WEIGHT * KL.
  3. scaling  scaling_factor = 1 / std of the posterior-mean latents (as SD's 0.18215 was chosen).
  4. UNet     the standard noise-prediction objective on SD's scaled-linear schedule (1000 steps,
              betas 0.00085 -> 0.012): L = |eps - eps_theta(sqrt(a_t) z + sqrt(1 - a_t) eps, t, c)|^2,
              t ~ U{0..999}, z a posterior sample. With --zero-snr the schedule is rescaled to zero
              terminal SNR (a_999 = 0, Lin et al. 2024) and the UNet predicts v = sqrt(a_t) eps -
              sqrt(1 - a_t) z: at t = 999 it sees pure noise in training as in sampling, so where the
              shape goes comes from the caption (SD's schedule leaves a trace of the image at t = 999,
              and a model trained on it takes the layout from the noise; docs/shapes.md measures
              both). The CLIP text encoder trains jointly with the UNet
              (a randomly initialized char-level encoder gives the UNet no word features to attend
              to; training it plays the part of a pretrained encoder). Captions are dropped to ""
              with probability CAPTION_DROPOUT, so classifier-free guidance is available.
  5. save     StableDiffusionPipeline.save_pretrained (safetensors), then a check: fidelity of 50-step
              and 1-step deterministic DDIM samples of the held-out prompts (shapes.fidelity).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from actors.tiny_model import char_clip_config, char_clip_tokenizer, save_sd_pipeline
from shapes import ASSETS
from shapes.data import IMAGE_SIZE, heldout_prompts, sample_images, train_prompts

DEFAULT_OUT = ASSETS / "shapes-sd"
DATA_SEED = 0
IMAGES_PER_PROMPT = 48
MAX_TOKENS = 40  # char-level: "a large magenta triangle at the bottom" is 32 chars + start/end
KL_WEIGHT = 1e-6
CAPTION_DROPOUT = 0.1


def build_components(tokenizer_dir: Path, zero_snr: bool = False):
    """Tokenizer, text encoder, VAE, UNet and scheduler, freshly initialized (seed set by the caller);
    `zero_snr`: the schedule rescaled to zero terminal SNR, with v-prediction."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = char_clip_tokenizer(tokenizer_dir, MAX_TOKENS)
    text_encoder = CLIPTextModel(char_clip_config(tokenizer, 64))
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),  # attention at 8x8 only: CPU time
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        rescale_betas_zero_snr=zero_snr,
        prediction_type="v_prediction" if zero_snr else "epsilon",  # at SNR 0, eps does not give x0
        timestep_spacing="trailing",  # k-step sampling starts at t = 999 for every k (1-step included)
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return tokenizer, text_encoder, vae, unet, scheduler


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def log(path: Path | None, message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    if path is not None:
        with path.open("a") as f:
            f.write(line + "\n")


def train_vae(vae, images: torch.Tensor, steps: int, batch: int, lr: float, gen: torch.Generator, logfile) -> None:
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        x = images[idx]  # (b, 3, H, W)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        mse = torch.mean((recon - x) ** 2)
        loss = mse + KL_WEIGHT * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(logfile, f"vae step {step} mse {mse.item():.5f}")
    vae.eval()


@torch.no_grad()
def encode_all(vae, images: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std (N, 4, h, w) of every image."""
    means, stds = [], []
    for start in range(0, len(images), chunk):
        posterior = vae.encode(images[start : start + chunk]).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def train_unet(
    unet,
    text_encoder,
    tokens: torch.Tensor,
    empty: torch.Tensor,
    means,
    stds,
    scheduler,
    steps: int,
    batch: int,
    lr: float,
    gen: torch.Generator,
    logfile,
) -> None:
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warmup = 200
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    unet.train()
    text_encoder.train()
    running = None
    for step in range(steps):
        idx = torch.randint(0, len(means), (batch,), generator=gen)
        z = means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)  # (b, 4, h, w)
        drop = torch.rand(batch, generator=gen) < CAPTION_DROPOUT
        ids = torch.where(drop[:, None], empty[None], tokens[idx])  # (b, L)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        eps = torch.randn(z.shape, generator=gen)
        a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * eps
        target = eps if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(z, eps, t)  # eps or v
        pred = unet(noisy, t, text_encoder(ids)[0]).sample
        loss = torch.mean((pred - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(logfile, f"unet step {step} loss {running:.5f} lr {sched.get_last_lr()[0]:.2e}")
    unet.eval()
    text_encoder.eval()


def check_samples(directory: Path, per_prompt: int, logfile) -> dict[str, float]:
    """Held-out fidelity of deterministic DDIM samples at 1, 2, 4, 8 and 50 steps, via from_pretrained."""
    from actors.config import ModelConfig
    from actors.policy import load_pipeline
    from actors.sampling import decode_to_uint8, sample_deterministic
    from plumbing.seeds import seeded_generator
    from shapes.fidelity import fidelity

    pipe = load_pipeline(ModelConfig(pretrained=str(directory), local_files_only=True), with_lora=False)
    prompts = [p for p in heldout_prompts() for _ in range(per_prompt)]
    result = {}
    for k in (1, 2, 4, 8, 50):
        gens = [seeded_generator(12345, 0, i) for i in range(len(prompts))]
        images = decode_to_uint8(pipe, sample_deterministic(pipe, prompts, gens, k))
        result[f"fidelity_{k}"] = float(fidelity(images, prompts).mean())
        log(logfile, f"held-out fidelity at {k} steps: {result[f'fidelity_{k}']:.3f}")
    return result


def write_check(out: Path, what: str, cpu_s: float, per_prompt: int, logfile) -> None:
    """After a pipeline is saved in `out`: its held-out check (check_samples) and the CPU time, in
    out/training_check.json (`<what>_cpu_seconds`)."""
    log(logfile, f"saved {out}; {what} CPU time {cpu_s:.0f} s")
    result = check_samples(out, per_prompt, logfile) if per_prompt > 0 else {}  # 0: no check (the tests' short runs)
    result[f"{what}_cpu_seconds"] = round(cpu_s)
    (out / "training_check.json").write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output pipeline directory (replaced)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of initialization and training draws")
    parser.add_argument("--vae-steps", type=int, default=400)
    parser.add_argument("--unet-steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--zero-snr",
        action="store_true",
        help="zero terminal SNR schedule with v-prediction (the layout from the caption, not the noise)",
    )
    parser.add_argument("--log", default=None, help="also append progress lines to this file")
    parser.add_argument(
        "--check-per-prompt", type=int, default=8, help="held-out samples per prompt in the final check (0: none)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    logfile = Path(args.log) if args.log else None
    start = time.process_time()

    images_np, captions = sample_images(train_prompts(), IMAGES_PER_PROMPT, DATA_SEED)
    images = to_tensor(images_np)  # (N, 3, 32, 32)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(args.seed)
        tokenizer, text_encoder, vae, unet, scheduler = build_components(Path(tmp), args.zero_snr)
    log(
        logfile,
        f"params: unet {sum(p.numel() for p in unet.parameters())} vae {sum(p.numel() for p in vae.parameters())} "
        f"text {sum(p.numel() for p in text_encoder.parameters())}; {len(images)} training images",
    )
    gen = torch.Generator().manual_seed(args.seed)
    train_vae(vae, images, args.vae_steps, 32, 1e-3, gen, logfile)
    vae.requires_grad_(False)
    means, stds = encode_all(vae, images)
    scale = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=round(scale, 5))
    means, stds = means * vae.config.scaling_factor, stds * vae.config.scaling_factor
    log(logfile, f"latent scaling_factor {vae.config.scaling_factor}")

    def ids(texts: list[str]) -> torch.Tensor:
        return tokenizer(
            texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids

    tokens, empty = ids(captions), ids([""])[0]
    train_unet(
        unet, text_encoder, tokens, empty, means, stds, scheduler, args.unet_steps, args.batch, 1e-3, gen, logfile
    )
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    save_sd_pipeline(out, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
    write_check(out, "train", time.process_time() - start, args.check_per_prompt, logfile)


if __name__ == "__main__":
    main()

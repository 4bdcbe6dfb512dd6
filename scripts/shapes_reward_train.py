"""Train the learned shapes reward (shapes/net.py) and save it under shapes/assets.

    python -m scripts.shapes_reward_train            # writes shapes/assets/shapes-classifier

One CPU thread, deterministic (same torch build and CPU: same bytes). Data: the 120 training prompts
x IMAGES_PER_PROMPT clean images (shapes.data, seed DATA_SEED, a different draw from the
text-to-image model's), each with Gaussian pixel noise (std 0.05) as the only augmentation. Loss: the
sum of the four factors' cross-entropies. The check at the end reports per-factor accuracy on images
of the held-out prompts, which the model never saw as combinations.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from shapes.data import heldout_prompts, sample_images, train_prompts
from shapes.net import DEFAULT_DIR, FACTORS, FactorClassifier, save, targets, to_pixels

DATA_SEED = 1
IMAGES_PER_PROMPT = 40
NOISE_STD = 0.05


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_DIR), help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    start = time.process_time()
    images, captions = sample_images(train_prompts(), IMAGES_PER_PROMPT, DATA_SEED)
    pixels, target = to_pixels(images), targets(captions)  # (N, 3, 32, 32), (N, 4)
    torch.manual_seed(args.seed)
    model = FactorClassifier()
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for step in range(args.steps):
        idx = torch.randint(0, len(pixels), (args.batch,), generator=gen)
        x = pixels[idx] + NOISE_STD * 2 * torch.randn(pixels[idx].shape, generator=gen)  # std 0.05 of full scale
        logits = model(x)
        loss = sum(torch.nn.functional.cross_entropy(logit, target[idx, k]) for k, logit in enumerate(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    held_images, held_captions = sample_images(heldout_prompts(), 20, DATA_SEED + 1)
    with torch.no_grad():
        logits = model(to_pixels(held_images))
    held_target = targets(held_captions)
    accuracy = {
        name: float((logit.argmax(1) == held_target[:, k]).float().mean())
        for k, ((name, _), logit) in enumerate(zip(FACTORS, logits))
    }
    cpu_s = time.process_time() - start
    print(f"held-out accuracy {accuracy}; CPU time {cpu_s:.0f} s", flush=True)
    save(
        model,
        Path(args.out),
        {
            "heldout_accuracy": accuracy,
            "train_cpu_seconds": round(cpu_s),
            "steps": args.steps,
            "data_seed": DATA_SEED,
            "images_per_prompt": IMAGES_PER_PROMPT,
            "seed": args.seed,
        },
    )


if __name__ == "__main__":
    main()

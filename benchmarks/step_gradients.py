"""Size of each denoising step's log-probability gradient, the quantity every loss term scales.

    python -m benchmarks.step_gradients [--config shapes] [--trajectories 6] [--out FILE.json] [KEY=VALUE ...]

Samples trajectories of the preset's model at its T and eta (LoRA at initialization, one thread),
then, for every step i, the norm of the gradient of log pi(x_{i+1} | x_i) (the mean over latent
elements, as the loss uses it) with respect to the LoRA parameters, per trajectory, and the step's
sigma. The log-probability's gradient scales with 1 / sigma; the last step's sigma is small (its
alpha goes to the final alpha), and no reward sees that step's action (r_last scores x0_{T-1},
computed before it), so its term is the largest and pure noise: train.skip_last_step
(docs/shapes.md#the-last-step). DDIM families only. Prints one line per step and a final JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics

from benchmarks.output import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    import torch

    from actors.batch import PolicyWeights
    from actors.ddim import ddim_sigma, step_alphas
    from actors.policy import encode_prompts, lora_state
    from actors.prompts import load_prompts
    from actors.rollout_worker import RolloutWorker
    from actors.sampling import score_steps
    from learner.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="shapes", help="preset or YAML file (its model, sampling and prompts)")
    p.add_argument(
        "--trajectories", type=int, default=6, help="trajectories (one of each sampled pair), one per prompt"
    )
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. sampling.num_steps=4")
    args = p.parse_intermixed_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, args.overrides)
    n = args.trajectories
    worker = RolloutWorker(model=cfg.model, sampling=cfg.sampling, seed=cfg.seed)
    worker.set_weights(PolicyWeights(0, lora_state(worker.pipe.unet)))
    prompts = load_prompts(cfg.prompts.source, "prompts.source")[:n]
    traj = worker.rollout(epoch=0, pair_indices=list(range(n)), prompts=prompts, version=0).trajectories
    unet, scheduler = worker.pipe.unet, worker.pipe.scheduler
    params = [p for name, p in unet.named_parameters() if "lora" in name]
    for param in params:
        param.requires_grad_(True)
    embeds = encode_prompts(worker.pipe, prompts)  # (n, L, D)
    T = traj.timesteps.shape[0]
    a_t, a_prev = step_alphas(torch.arange(T), traj.timesteps, scheduler.alphas_cumprod, scheduler.final_alpha_cumprod)
    sigmas = ddim_sigma(a_t, a_prev, cfg.sampling.eta).tolist()
    steps = []
    for i in range(T):
        norms = []
        for k in range(n):  # trajectory 0 of pair k
            x, x_next = traj.latents[k : k + 1, 0, i], traj.latents[k : k + 1, 0, i + 1]
            lp = score_steps(
                unet, scheduler, x, x_next, torch.full((1,), i), traj.timesteps, embeds[k : k + 1], cfg.sampling.eta
            ).log_prob
            grads = torch.autograd.grad(lp.sum(), params)
            norms.append(float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))))
        steps.append(
            {
                "step": i,
                "timestep": int(traj.timesteps[i]),
                "sigma": round(sigmas[i], 4),
                "grad_norm_median": statistics.median(norms),
                "grad_norm_min": min(norms),
                "grad_norm_max": max(norms),
            }
        )
        s = steps[-1]
        print(
            f"step {i} (t = {s['timestep']}): sigma {s['sigma']:.3f}  |grad log pi| median {s['grad_norm_median']:.3g} "
            f"(min {s['grad_norm_min']:.3g}, max {s['grad_norm_max']:.3g})",
            flush=True,
        )
    others = statistics.median(s["grad_norm_median"] for s in steps[:-1])
    result = {
        "benchmark": "step_gradients",
        "config": args.config,
        "T": T,
        "eta": cfg.sampling.eta,
        "trajectories": n,
        "steps": steps,
        "last_over_median_other": steps[-1]["grad_norm_median"] / others,
    }
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())

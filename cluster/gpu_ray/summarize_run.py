"""One JSON line from a run's metrics.jsonl: per epoch and as medians over the epochs after the first
(which holds torch.compile's one-time cost), the GPU busy fraction, MFU and the epoch's phase times.

    python cluster/gpu_ray/summarize_run.py RUN_DIR [KEY=VALUE ...]   # extra keys go into the line as they are
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

KEYS = (
    "gpu_busy_fraction",
    "mfu_rollout",
    "mfu_update",
    "time_epoch_s",
    "time_rollout_s",
    "time_update_s",
    "busy_rollout_s",
    "busy_learner_s",
    "pairs",
    "reward_mean",
    "loss",
)


def summarize(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    records = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]
        if path.exists()
        else []
    )
    epochs = [{k: r[k] for k in ("epoch", *KEYS) if k in r} for r in records if "epoch" in r]
    steady = epochs[1:] or epochs
    medians = {}
    for k in KEYS:
        values = [e[k] for e in steady if isinstance(e.get(k), (int, float)) and e[k] == e[k]]
        if values:
            medians[k] = round(statistics.median(values), 4)
    return {"run_dir": str(run_dir), "epochs": len(epochs), "median_after_first": medians, "per_epoch": epochs}


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    extra = {k: _value(v) for k, v in (a.split("=", 1) for a in argv[1:] if "=" in a)}
    out = summarize(Path(argv[0])) | extra
    print(json.dumps(out))
    return 0 if out["epochs"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

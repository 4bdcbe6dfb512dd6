"""What the equivalence scripts share: the seeded test images (made with numpy, so both sides draw the
same pixels), their sha256, fingerprints of preprocessed pixels, the fixture folders and the pieces of
reference.json and of the comparison reports that every model's scripts write alike.

The ``*_reference.py`` scripts write the images' specs and sha256 into reference.json; the
``*_compare.py`` scripts and the tests (tests/fixtures/equivalence.py) regenerate the images from those
specs and check the sha256 (``reference_images``).

Standard library and numpy only at the top: the reference scripts run in side virtualenvs that hold the
original packages but not this project's environment, and the tests use this module without those
packages. How each side finds it:

- the project's environment (the tests; the compare scripts, run with ``PYTHONPATH=.`` from the
  repository root) imports it as ``scripts.equivalence.common``;
- a reference script, run as a file in a side virtualenv where the repository is not importable, puts
  its own folder first on sys.path and imports ``common`` from beside it (Python already puts a script's
  folder there when it runs it; the script does it itself so that it also imports when loaded by file
  path from elsewhere, e.g. ``importlib.util.spec_from_file_location``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PIXEL_PROBES = 64  # pixel values recorded per image in its fingerprint


def fixture_dir(model: str) -> Path:
    """tests/fixtures/<model>_tiny/: what `<model>_reference.py tiny` writes and the tests read."""
    return REPO / "tests" / "fixtures" / f"{model}_tiny"


# ---------------------------------------------------------------- images and pixels


def make_image(height: int, width: int, kind: str, seed: int) -> np.ndarray:
    """uint8 (height, width, 3): "noise" = i.i.d. pixels, "blocks" = 8x8 blocks of random colour
    with a horizontal ramp added (smooth regions and sharp edges)."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    blocks = rng.integers(0, 200, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.int64)
    img = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]
    ramp = (np.arange(width) * 55 // max(width - 1, 1))[None, :, None]
    return (img + ramp).astype(np.uint8)


def image_sha256(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


def image_records(specs: list[tuple[int, int, str, int]], images: list[np.ndarray]) -> list[dict]:
    """reference.json's "images": each (height, width, kind, seed) spec with its image's sha256."""
    return [
        {"height": h, "width": w, "kind": k, "seed": s, "sha256": image_sha256(im)}
        for (h, w, k, s), im in zip(specs, images)
    ]


def reference_images(ref: dict) -> list[np.ndarray]:
    """The images of reference.json's "images", made again here; each must have its recorded sha256."""
    images = []
    for spec in ref["images"]:
        img = make_image(spec["height"], spec["width"], spec["kind"], spec["seed"])
        assert image_sha256(img) == spec["sha256"], f"numpy made different pixels for {spec}"
        images.append(img)
    return images


def probe_positions(size: int, count: int = PIXEL_PROBES) -> np.ndarray:
    """(count,) fixed flat positions in an array of `size` values (seeded: the same on both sides)."""
    return np.random.default_rng(0).integers(0, size, size=count)


def pixel_summary(px: np.ndarray) -> dict:
    """A small fingerprint of one image's preprocessed pixels (any shape, as float32): its sha256, sum,
    sum of squares, and the values at PIXEL_PROBES fixed flat positions."""
    flat = np.ascontiguousarray(px, dtype=np.float32).reshape(-1)
    return {
        "sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
        "sum": float(flat.sum(dtype=np.float64)),
        "sum_sq": float((flat.astype(np.float64) ** 2).sum()),
        "probes": flat[probe_positions(flat.size)].tolist(),
    }


# ---------------------------------------------------------------- reference.json and the reports


def python_version() -> str:
    return sys.version.split()[0]


def write_reference(out: Path, ref: dict) -> None:
    (out / "reference.json").write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")


def reference_args(usage: str, fixture: Path) -> tuple[str, Path, list[str]]:
    """A reference script's command line, `tiny [OUTDIR] | full OUTDIR [...]` -> (mode, OUTDIR, the rest);
    tiny writes `fixture` unless told otherwise, full needs an OUTDIR (its model is not for committing)."""
    mode = sys.argv[1] if len(sys.argv) > 1 else "tiny"
    if mode not in ("tiny", "full") or (mode == "full" and len(sys.argv) < 3):
        sys.exit(f"usage: {usage}")
    return mode, Path(sys.argv[2]) if len(sys.argv) > 2 else fixture, sys.argv[3:]


def max_abs_diff(ours: Any, original: Any) -> float:
    return float(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(original, dtype=np.float64)).max())


def probe_diff(px: np.ndarray, summary: dict) -> float:
    """The largest difference between our preprocessed pixels and the original's at its probe positions."""
    flat = np.asarray(px).reshape(-1)
    return max_abs_diff(flat[probe_positions(flat.size, len(summary["probes"]))], summary["probes"])


def tokenizer_report(prompts: list[str], differing: list[str]) -> dict:
    """How many of the full-size run's extra tokenizer prompts gave the original's ids, and which did not."""
    return {
        "tokenizer_prompts_equal": f"{len(prompts) - len(differing)}/{len(prompts)}",
        "tokenizer_prompts_differing": differing,
    }


def score_report(ours: list[float], ref: dict) -> dict:
    return {
        "score_max_abs_diff": max_abs_diff(ours, ref["scores"]),
        "scores_original": ref["scores"],
        "scores_ours": ours,
        "reference_versions": ref["versions"],
    }


def stopwatch() -> Callable[[], float]:
    """A function giving the seconds since this call, to 0.1 s."""
    start = time.perf_counter()
    return lambda: round(time.perf_counter() - start, 1)


def compare_main(compare: Callable[..., dict], usage: str, max_args: int = 1) -> None:
    """A compare script's command line, `DIR [up to max_args - 1 more]`: print compare(DIR, ...) as JSON."""
    if not 2 <= len(sys.argv) <= max_args + 1:
        sys.exit(f"usage: {usage}")
    print(json.dumps(compare(Path(sys.argv[1]), *sys.argv[2:]), indent=1, ensure_ascii=False))

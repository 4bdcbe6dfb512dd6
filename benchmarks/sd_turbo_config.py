"""An SD-Turbo-sized pipeline (SD 2.1 architecture, 512 x 512) built from configs with random
weights: no download. Kept for its callers; the builder is benchmarks/real_size.py's "sd" family,
beside the other families' real sizes."""

from __future__ import annotations

from benchmarks.real_size import build_sd_turbo_sized

__all__ = ["build_sd_turbo_sized"]

"""Seeds mixed from integer keys: every random stream of a run is named by a tuple such as
(seed, epoch, pair index), never drawn from a global RNG, so results do not depend on which
process or in which order work was done. Pure numpy/torch: no ray."""

from __future__ import annotations

import numpy as np
import torch

# Stream tags: a fixed last key per kind of stream, so that two kinds never share a seed.
UPDATE, HELDOUT, PROMPTS = 0x5D90, 0xE7A1, 0x9E37  # (a pair's stream is (seed, epoch, pair index) alone)


def mixed_seed(*keys: int | None) -> int:
    """A 63-bit seed from integer keys (numpy's SeedSequence mixing); None keys are left out."""
    state = np.random.SeedSequence([k for k in keys if k is not None]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & 0x7FFF_FFFF_FFFF_FFFF


def seeded_generator(*keys: int | None) -> torch.Generator:
    """A CPU torch.Generator seeded by mixed_seed(*keys)."""
    return torch.Generator().manual_seed(mixed_seed(*keys))

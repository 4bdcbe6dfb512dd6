"""A test-only hook: kill this worker process with SIGKILL (as the kernel's OOM killer or a lost node
would) at a named point, so that fault tests kill at a point they control rather than at a moment
the machine's load picks. Off unless SDPO_KILL_AT is set.

    SDPO_KILL_AT="<point>:<epoch>:<rank>[,...]"   points: rollout (the first chunk a policy worker
                                                  samples in that epoch), update (before the first
                                                  all-reduce), state (a checkpoint's state_dict;
                                                  there the number is the policy version)
    SDPO_KILL_MARKER=<directory>                  each point fires once per run: a marker file there
                                                  records it, so the restarted worker goes on
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def kill_point(point: str, epoch: int, rank: int) -> None:
    """SIGKILL this process if SDPO_KILL_AT names (point, epoch, rank) and it has not fired yet."""
    spec = os.environ.get("SDPO_KILL_AT")
    if not spec or f"{point}:{epoch}:{rank}" not in spec.split(","):
        return
    marker = Path(os.environ.get("SDPO_KILL_MARKER", ".")) / f"killed-{point}-{epoch}-{rank}"
    try:
        marker.open("x").close()  # once: a restarted worker (same environment) finds the marker
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)

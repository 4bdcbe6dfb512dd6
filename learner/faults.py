"""What the driver does when something goes wrong: a SIGTERM (preemption), a dead actor, and the
one-line message and exit code of every failure that is not a bug.

Exit codes of ``python -m learner.main``:
    0    done
    1    a runtime failure: the learner died or ran out of memory, every rollout actor was lost,
         too many pairs without a reward. Rerunning the same command resumes from the last checkpoint.
    2    bad input: config values, types or keys, files, model, prompts, rewards, resources the
         cluster can never hold, a run directory whose checkpoint has an incompatible config
    130  interrupted (Ctrl-C)
    143  preempted by SIGTERM (128 + 15); a job retry (KubeRay backoffLimit) resumes the run
"""

from __future__ import annotations

import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PREEMPTED = 1, 2, 130, 143


class Preempted(SystemExit):
    """Raised to leave the run after a SIGTERM (exit code 143)."""

    def __init__(self) -> None:
        super().__init__(EXIT_PREEMPTED)


class Preemption:
    """SIGTERM handling. On the signal, if the current epoch should end (judged by how long the
    previous one took) within `grace_s`, it is finished and checkpointed and the run exits; if not,
    it is abandoned at once (the last checkpoint stands). A checkpoint being written is never
    interrupted. Either way the exit code is 143.

    Install it after ray.init, which sets a SIGTERM handler of its own in the driver."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.requested = False  # SIGTERM seen: finish this epoch, checkpoint it, exit
        self.abandoned = False  # SIGTERM seen: the epoch in progress was abandoned
        self._epoch_start: float | None = None
        self._epoch_s: float | None = None  # duration of the last whole epoch (its checkpoint included)
        self._critical = 0

    def install(self) -> "Preemption":
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def epoch_started(self) -> None:
        now = time.monotonic()
        if self._epoch_start is not None:
            self._epoch_s = now - self._epoch_start
        self._epoch_start = now

    def seconds_left(self) -> float | None:
        """Expected seconds until the current epoch's checkpoint; None before one epoch was timed."""
        if self._epoch_s is None or self._epoch_start is None:
            return None
        return max(0.0, self._epoch_s - (time.monotonic() - self._epoch_start))

    def _on_sigterm(self, signum, frame) -> None:
        if self.requested or self.abandoned:
            return
        left = self.seconds_left()
        if self._critical or (left is not None and left <= self.grace_s):
            self.requested = True
            _say(f"SIGTERM: finishing this epoch (~{left or 0:.0f}s left, grace {self.grace_s:g}s), checkpointing it, then exiting")
            return
        self.abandoned = True
        eta = "unknown" if left is None else f"~{left:.0f}s"
        _say(f"SIGTERM: abandoning this epoch (time to its end {eta} > grace {self.grace_s:g}s); exiting")
        raise Preempted()

    @contextmanager
    def critical(self):
        """A section a SIGTERM must not interrupt (it only sets `requested`)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1

    def exit_if_requested(self) -> None:
        if self.requested:
            raise Preempted()


def _say(message: str) -> None:
    os.write(2, (message + "\n").encode())  # no buffered stream: safe inside a signal handler


@dataclass
class Failure:
    code: int
    message: str  # one line


def actor_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the actor process is gone or unreachable' (none without Ray)."""
    try:
        from ray.exceptions import RayActorError
    except ImportError:
        return ()
    return (RayActorError,)


_NAMES: dict[str, str] = {}  # Ray actor id (hex) -> the worker's identity(), recorded at launch


def name_workers(handles: list) -> list[str]:
    """Each worker's identity() (a learner group: each rank's), remembered so that a later failure
    of that actor is reported under its name."""
    from learner.launch import get

    members = [m for h in handles for m in (getattr(h, "actors", None) or [h])]
    names = get([m.identity.remote() for m in members])
    for m, name in zip(members, names):
        actor_id = getattr(m, "_actor_id", None)
        if actor_id is not None:
            _NAMES[actor_id.hex()] = name
    return names


_ACTOR_FIELD = re.compile(r"^\s*(class_name|pid|ip): (\S+)\s*$", re.M)
_ERROR_LINE = re.compile(r"^\s*(\w*(?:Error|Exception)): (.+)$", re.M)


def describe_actor_error(err: BaseException) -> str:
    """'<Class>(pid=..., ip=...) died: <cause>' from a RayActorError, in one line."""
    text = str(err)
    fields = dict(_ACTOR_FIELD.findall(text))
    actor_id = getattr(err, "actor_id", None)
    if actor_id in _NAMES:
        who = _NAMES[actor_id]
    elif "pid" in fields:
        who = f"{fields.get('class_name', 'actor')}(pid={fields['pid']}, ip={fields.get('ip', '?')})"
    else:
        who = f"actor {actor_id or '?'}"
    if "NODE_OUT_OF_MEMORY" in text or "memory monitor" in text:
        cause = "out of memory (killed by Ray's memory monitor)"
    elif "node has died" in text or getattr(err, "preempted", False):
        cause = "its node was lost (" + ("preempted" if getattr(err, "preempted", False) else "the node died") + ")"
    elif "creation task" in text and _ERROR_LINE.search(text):
        kind, msg = _ERROR_LINE.findall(text)[-1]
        cause = f"its constructor raised {kind}: {msg.strip()}"
    elif m := re.search(r"temporarily unavailable: (.*?)\.* The task may or may not", text, re.S):
        cause = "Ray is restarting it" if "restarting" in m.group(1) else m.group(1)
    elif m := re.search(r"The actor is dead because ([^.]+)\.(?:.*?Worker exit type: (\w+))?", text, re.S):
        cause = m.group(1) + (f" (exit type {m.group(2)})" if m.group(2) else "")
    else:
        cause = " ".join(text.split())[:300]
    verb = "is unreachable" if type(err).__name__ == "ActorUnavailableError" else "died"
    return f"{who} {verb}: {cause}"


def failure(err: BaseException, preemption: Preemption | None, run_dir: Path) -> Failure | None:
    """The exit code and one-line message of an error that ended a run, or None for a bug (which
    keeps its traceback)."""
    from actors.policy import ModelLoadError
    from actors.prompts import PromptError
    from learner.config import ConfigError
    from learner.dispatch import RolloutActorsLostError
    from learner.launch import ResourceError
    from learner.stages import TooManyDroppedError

    if preemption is not None and (preemption.requested or preemption.abandoned) and isinstance(err, SystemExit):
        return Failure(EXIT_PREEMPTED, f"preempted by SIGTERM; {_resume_hint(run_dir)}")
    if isinstance(err, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, f"interrupted; {_resume_hint(run_dir)}")
    if isinstance(err, (ConfigError, ModelLoadError, PromptError, ResourceError)):
        return Failure(EXIT_USAGE, str(err))
    if isinstance(err, (TooManyDroppedError, RolloutActorsLostError)):
        return Failure(EXIT_FAILURE, f"{err}; {_resume_hint(run_dir)}")
    if isinstance(err, actor_errors()):
        if m := re.search(r"ModelLoadError: (.+)", str(err)):  # a worker could not load the model: bad input
            return Failure(EXIT_USAGE, m.group(1).strip())
        return Failure(EXIT_FAILURE, f"{describe_actor_error(err)}; {_resume_hint(run_dir)}")
    cause = getattr(err, "cause", None)  # RayTaskError: an exception inside an actor method
    if cause is not None and type(cause).__name__ in ("OutOfMemoryError", "MemoryError"):
        m = re.search(r"ray::([\w.]+)\(\)\S* \(pid=(\d+), ip=([^,)]+)", str(err))  # 'ray::LearnerWorker.update() (pid=.., ip=..'
        where = f"{m.group(1)} (pid={m.group(2)}, ip={m.group(3)})" if m else "an actor"
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return Failure(EXIT_FAILURE, f"{where} ran out of memory: {first}; {_resume_hint(run_dir)}")
    return None


def _resume_hint(run_dir: Path) -> str:
    from learner.checkpoint import checkpoint_dir, latest_valid

    last = latest_valid(checkpoint_dir(run_dir))
    if last is None:
        return "no checkpoint was written yet; rerunning the same command starts the run again"
    return f"rerun the same command to resume from {last}"

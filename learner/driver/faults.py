"""What the driver does when something goes wrong: a SIGTERM (preemption), a dead actor, and the
one-line message and exit code of an error that ended the run. Exit codes: actors/errors.py.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from actors.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USAGE, SDPOError, usage_error_names
from actors.remote import actor_failures, get
from learner.run.checkpoint import checkpoint_dir, latest_valid


class Preempted(SystemExit):
    """Raised to leave the run after a SIGTERM (exit code 143). A SystemExit, so that no handler of
    ordinary exceptions on the way up swallows it."""

    exit_code = EXIT_PREEMPTED

    def __init__(self) -> None:
        super().__init__(EXIT_PREEMPTED)


class Preemption:
    """SIGTERM handling. On the signal, if the current epoch should end (judged by how long the
    previous one took) within `grace_s`, it is finished and checkpointed and the run exits; if not,
    it is abandoned at once (the last checkpoint stands). A checkpoint being written is never
    interrupted. Either way the exit code is 143.

    Install it after ray.init, which sets a SIGTERM handler of its own in the driver."""

    def __init__(self, grace_s: float, clock=time.monotonic):
        self.grace_s, self._clock = grace_s, clock
        self.requested = False  # SIGTERM seen: finish this epoch, checkpoint it, exit
        self.abandoned = False  # SIGTERM seen: the epoch in progress was abandoned
        self._epoch_start: float | None = None
        self._epoch_s: float | None = None  # duration of the last whole epoch (its checkpoint included)
        self._critical = 0

    def install(self) -> "Preemption":
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def epoch_started(self) -> None:
        self.exit_if_requested()  # a SIGTERM whose exception was swallowed (e.g. raised inside a finalizer) still ends the run
        now = self._clock()
        if self._epoch_start is not None:
            self._epoch_s = now - self._epoch_start
        self._epoch_start = now

    def seconds_left(self) -> float | None:
        """Expected seconds until the current epoch's checkpoint; None before one epoch was timed."""
        if self._epoch_s is None or self._epoch_start is None:
            return None
        return max(0.0, self._epoch_s - (self._clock() - self._epoch_start))

    def _on_sigterm(self, signum, frame) -> None:
        if self.abandoned:  # the first one's exception was swallowed somewhere: raise again
            raise Preempted()
        if self.requested:
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
        """A section a SIGTERM must not interrupt (it only sets `requested`), nor a first Ctrl-C: that
        one is held until the section ends (a checkpoint being written is finished, then the run
        stops with 130); a second Ctrl-C interrupts at once (the checkpoint write is atomic: the
        previous checkpoint stands)."""
        self._critical += 1
        held: list[int] = []

        def hold_sigint(signum, frame):
            if held:
                raise KeyboardInterrupt
            held.append(signum)
            _say("Ctrl-C: finishing the checkpoint being written, then stopping (Ctrl-C again to stop at once)")

        previous = signal.signal(signal.SIGINT, hold_sigint) if _main_thread() else None
        try:
            yield
        finally:
            self._critical -= 1
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if held:
            raise KeyboardInterrupt

    def exit_if_requested(self) -> None:
        """Leave with 143 when a SIGTERM asked to (finish-and-checkpoint, or abandon): called at every
        epoch's start and end and after the start-up steps, so a SIGTERM is never lost even where its
        handler's exception was swallowed (Python prints "Exception ignored in ..." and goes on)."""
        if self.requested or self.abandoned:
            raise Preempted()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _say(message: str) -> None:
    os.write(2, (message + "\n").encode())  # no buffered stream: safe inside a signal handler


@dataclass
class Failure:
    code: int
    message: str  # one line


_NAMES: dict[str, str] = {}  # Ray actor id (hex) -> the worker's identity(), recorded at launch


def name_workers(handles: list) -> list[str]:
    """Each worker's identity() (a learner group: each rank's), remembered so that a later failure
    of that actor is reported under its name."""
    members = list(handles)
    names = get([m.identity.remote() for m in members])
    for m, name in zip(members, names):
        actor_id = getattr(m, "_actor_id", None)
        if actor_id is not None:
            _NAMES[actor_id.hex()] = name
    return names


_ACTOR_FIELD = re.compile(r"^\s*(class_name|pid|ip): (\S+)\s*$", re.M)
_ERROR_LINE = re.compile(r"^\s*([\w.]*(?:Error|Exception)): (.+)$", re.M)


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
    elif getattr(err, "actor_init_failed", False) and _ERROR_LINE.search(text):
        kind, msg = _raised(text)
        cause = f"its constructor raised {kind}: {msg}"
    elif m := re.search(r"temporarily unavailable: (.*?)\.* The task may or may not", text, re.S):
        cause = "Ray is restarting it" if "restarting" in m.group(1) else m.group(1)
    elif m := re.search(r"The actor is dead because ([^.]+)\.(?:.*?Worker exit type: (\w+))?", text, re.S):
        cause = m.group(1) + (f" (exit type {m.group(2)})" if m.group(2) else "")
    else:
        cause = " ".join(text.split())[:300]
    from ray.exceptions import ActorUnavailableError

    verb = "is unreachable" if isinstance(err, ActorUnavailableError) else "died"
    return f"{who} {verb}: {cause}"


def failure(err: BaseException, preemption: Preemption | None, run_dir: Path) -> Failure | None:
    """The exit code and one-line message of an error that ended a run, by its type (every project
    error carries its exit code: actors/errors.py), or None for a bug (which keeps its traceback)."""
    if isinstance(err, SystemExit) and (
        (preemption is not None and (preemption.requested or preemption.abandoned)) or err.code == signal.SIGTERM  # Ray's own handler
    ):
        return Failure(EXIT_PREEMPTED, f"preempted by SIGTERM; {_resume_hint(run_dir)}")
    if isinstance(err, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, f"interrupted; {_resume_hint(run_dir)}")
    cause = getattr(err, "cause", None)  # RayTaskError: an exception raised inside an actor method
    if isinstance(cause, SDPOError):
        err = cause
    elif isinstance(cause, MemoryError) or type(cause).__name__ == "OutOfMemoryError":  # torch's CUDA OOM
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return Failure(EXIT_FAILURE, f"{_task_origin(err)} ran out of memory: {first}; {_resume_hint(run_dir)}")
    if isinstance(err, SDPOError):
        if err.exit_code == EXIT_USAGE:
            return Failure(EXIT_USAGE, str(err))
        return Failure(err.exit_code, f"{err}; {_resume_hint(run_dir)}")
    try:
        from ray.exceptions import OutOfMemoryError as RayOOM
    except ImportError:
        RayOOM = ()  # noqa: N806
    if RayOOM and isinstance(err, RayOOM):
        return Failure(EXIT_FAILURE, f"an actor was killed by Ray's memory monitor (out of memory); {_resume_hint(run_dir)}")
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):  # writing outputs
        return Failure(EXIT_FAILURE, f"cannot write {err.filename or 'the run directory'}: {err.strerror}; {_resume_hint(run_dir)}")
    try:
        from ray.exceptions import RuntimeEnvSetupError
    except ImportError:
        RuntimeEnvSetupError = ()  # noqa: N806
    if RuntimeEnvSetupError and isinstance(err, RuntimeEnvSetupError):  # only the reward servers have a runtime_env of their own
        return Failure(EXIT_USAGE, f"reward.runtime_env: Ray could not set up the reward servers' environment: {_setup_reason(str(err))}")
    try:
        from ray.exceptions import ObjectLostError
    except ImportError:
        ObjectLostError = ()  # noqa: N806
    if ObjectLostError and isinstance(err, ObjectLostError):  # e.g. a result whose node went away before it was fetched
        return Failure(
            EXIT_FAILURE, f"a worker's result was lost ({type(err).__name__}): the node that held it, and the actor that made it, died; {_resume_hint(run_dir)}"
        )
    if isinstance(err, actor_failures()):
        if getattr(err, "actor_init_failed", False):  # the constructor raised: Ray keeps only its text
            kind, msg = _raised(str(err))
            if kind in usage_error_names():  # e.g. ModelLoadError: bad input, not worth a retry
                return Failure(EXIT_USAGE, msg)
        return Failure(EXIT_FAILURE, f"{describe_actor_error(err)}; {_resume_hint(run_dir)}")
    return None


def _setup_reason(text: str) -> str:
    """The line of a RuntimeEnvSetupError's text that says why: the installer's last 'ERROR:' line
    (pip's 'No matching distribution found for ...'), else the last 'Name: message' line, else its first line."""
    errors = re.findall(r"^\s*ERROR: (.+)$", text, re.M)
    if errors:
        return errors[-1].strip()[:300]
    kind, msg = _raised(text)
    if kind:
        return f"{kind}: {msg}"[:300]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else "no reason given"


def _raised(text: str) -> tuple[str, str]:
    """(exception class name, message) of the last 'Name: message' line of a traceback's text."""
    found = _ERROR_LINE.findall(text)
    if not found:
        return "", ""
    kind, msg = found[-1]
    return kind.rsplit(".", 1)[-1], msg.strip()


def _task_origin(err: BaseException) -> str:
    """Which actor method raised (a RayTaskError): its role name by the actor id Ray attaches, else
    'Class.method (pid=..., ip=...)'. ray.get raises the per-cause subclass, which keeps none of
    these attributes, so then they are read from the first line of its text."""
    actor_id = getattr(err, "_actor_id", None)
    if actor_id in _NAMES:
        return _NAMES[actor_id]
    if getattr(err, "function_name", None):
        return f"{err.function_name} (pid={getattr(err, 'pid', '?')}, ip={getattr(err, 'ip', '?')})"
    if m := _TASK_LINE.search(str(err)):  # 'ray::LearnerWorker.update() (pid=7, ip=1.2.3.4, ...'
        return f"{m.group(1)} (pid={m.group(2)}, ip={m.group(3)})"
    return "an actor method"


_TASK_LINE = re.compile(r"ray::([\w.]+)\(\)\S* \(pid=(\d+), ip=([^,)]+)")


def _resume_hint(run_dir: Path) -> str:
    last = latest_valid(checkpoint_dir(run_dir))
    if last is None:
        return "no checkpoint was written yet; rerunning the same command starts the run again"
    return f"rerun the same command to resume from {last}"

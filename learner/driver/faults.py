"""What an error that ended the run means: its one-line message and exit code (exit codes:
plumbing/errors.py), and one-line descriptions of dead actors under the names they had at launch.
Signals (SIGTERM, Ctrl-C) are learner/driver/preemption.py's.
"""

from __future__ import annotations

import errno
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from learner.driver.preemption import Preemption
from learner.run.checkpoint import checkpoint_dir, latest_valid
from plumbing.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USAGE, SDPOError, usage_error_names
from plumbing.ray_errors import ray_errors
from plumbing.remote import actor_failures, get


@dataclass
class Failure:
    code: int
    message: str  # one line


class WorkerNames:
    """Ray actor id (hex) -> the worker's identity(), recorded at launch (and again for a restarted
    rank), so that a later failure of that actor is reported under its name. One per run: its
    Workers own it (learner/driver/launch.py)."""

    def __init__(self) -> None:
        self._by_id: dict[str, str] = {}

    def record(self, handles: list) -> list[str]:
        """Each worker's identity() (a learner group: each rank's), remembered under its actor id."""
        members = list(handles)
        names = get([m.identity.remote() for m in members])
        for m, name in zip(members, names):
            actor_id = getattr(m, "_actor_id", None)
            if actor_id is not None:
                self._by_id[actor_id.hex()] = name
        return names

    def of(self, actor_id: str | None) -> str | None:
        return self._by_id.get(actor_id) if actor_id is not None else None

    def describe(self, err: BaseException) -> str:
        return describe_actor_error(err, self)


_ACTOR_FIELD = re.compile(r"^\s*(class_name|pid|ip): (\S+)\s*$", re.M)
_ERROR_LINE = re.compile(r"^\s*([\w.]*(?:Error|Exception)): (.+)$", re.M)


def describe_actor_error(err: BaseException, names: WorkerNames | None = None) -> str:
    """'<name> died: <cause>' from a RayActorError, in one line: the name the worker had at launch,
    else '<Class>(pid=..., ip=...)'."""
    text = str(err)
    fields = dict(_ACTOR_FIELD.findall(text))
    actor_id = getattr(err, "actor_id", None)
    if names is not None and names.of(actor_id):
        who = names.of(actor_id)
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
    verb = "is unreachable" if isinstance(err, ray_errors("ActorUnavailableError")) else "died"
    return f"{who} {verb}: {cause}"


def failure(
    err: BaseException, preemption: Preemption | None, run_dir: Path, names: WorkerNames | None = None
) -> Failure | None:
    """The exit code and one-line message of an error that ended a run, by its type (every project
    error carries its exit code: plumbing/errors.py), or None for a bug (which keeps its traceback).
    `names`: the run's workers' names, for a failure of one of them."""
    if isinstance(err, SystemExit) and (
        (preemption is not None and (preemption.requested or preemption.abandoned))
        or err.code == signal.SIGTERM  # Ray's own handler
    ):
        return Failure(EXIT_PREEMPTED, f"preempted by SIGTERM; {_resume_hint(run_dir)}")
    if isinstance(err, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, f"interrupted; {_resume_hint(run_dir)}")
    cause = getattr(err, "cause", None)  # RayTaskError: an exception raised inside an actor method
    if isinstance(cause, SDPOError):
        err = cause
    elif isinstance(cause, MemoryError) or type(cause).__name__ == "OutOfMemoryError":  # torch's CUDA OOM
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return Failure(EXIT_FAILURE, f"{_task_origin(err, names)} ran out of memory: {first}; {_resume_hint(run_dir)}")
    if isinstance(err, SDPOError):
        if err.exit_code == EXIT_USAGE:
            return Failure(EXIT_USAGE, str(err))
        return Failure(err.exit_code, f"{err}; {_resume_hint(run_dir)}")
    if isinstance(err, ray_errors("OutOfMemoryError")):
        return Failure(
            EXIT_FAILURE, f"an actor was killed by Ray's memory monitor (out of memory); {_resume_hint(run_dir)}"
        )
    if isinstance(err, OSError) and err.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EROFS,
    ):  # writing outputs
        return Failure(
            EXIT_FAILURE, f"cannot write {err.filename or 'the run directory'}: {err.strerror}; {_resume_hint(run_dir)}"
        )
    if isinstance(err, ray_errors("RuntimeEnvSetupError")):  # only the reward servers have a runtime_env of their own
        return Failure(
            EXIT_USAGE,
            f"reward.runtime_env: Ray could not set up the reward servers' environment: {_setup_reason(str(err))}",
        )
    if isinstance(err, ray_errors("ObjectLostError")):  # e.g. a result whose node went away before it was fetched
        return Failure(
            EXIT_FAILURE,
            f"a worker's result was lost ({type(err).__name__}): the node that held it, and the actor that made it, "
            f"died; {_resume_hint(run_dir)}",
        )
    if isinstance(err, actor_failures()):
        if getattr(err, "actor_init_failed", False):  # the constructor raised: Ray keeps only its text
            kind, msg = _raised(str(err))
            if kind in usage_error_names():  # e.g. ModelLoadError: bad input, not worth a retry
                return Failure(EXIT_USAGE, msg)
        return Failure(EXIT_FAILURE, f"{describe_actor_error(err, names)}; {_resume_hint(run_dir)}")
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


def _task_origin(err: BaseException, names: WorkerNames | None) -> str:
    """Which actor method raised (a RayTaskError): its role name by the actor id Ray attaches, else
    'Class.method (pid=..., ip=...)'. ray.get raises the per-cause subclass, which keeps none of
    these attributes, so then they are read from the first line of its text."""
    if names is not None and names.of(getattr(err, "_actor_id", None)):
        return names.of(err._actor_id)
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

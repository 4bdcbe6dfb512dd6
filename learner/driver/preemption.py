"""SIGTERM (preemption) and Ctrl-C in the driver: finish and checkpoint the epoch when it fits the
grace period, never interrupt a checkpoint being written, and never lose the signal. Exit codes
143 and 130 (plumbing/errors.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

from plumbing.errors import EXIT_PREEMPTED


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
        self._doing = ""  # what the innermost critical section is finishing (for the messages)

    def install(self) -> "Preemption":
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def epoch_started(self) -> None:
        # a SIGTERM whose exception was swallowed (e.g. raised inside a finalizer) still ends the run
        self.exit_if_requested()
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
        if self._critical and self._epoch_start is None:  # start-up: nothing to checkpoint yet
            self.requested = True
            _say(f"SIGTERM: exiting once {self._doing} is done")
            return
        if self._critical or (left is not None and left <= self.grace_s):
            self.requested = True
            _say(
                f"SIGTERM: finishing this epoch (~{left or 0:.0f}s left, grace {self.grace_s:g}s), checkpointing it, "
                "then exiting"
            )
            return
        self.abandoned = True
        eta = "unknown" if left is None else f"~{left:.0f}s"
        _say(f"SIGTERM: abandoning this epoch (time to its end {eta} > grace {self.grace_s:g}s); exiting")
        raise Preempted()

    @contextmanager
    def critical(self, doing: str = "the checkpoint being written"):
        """A section a SIGTERM must not interrupt (it only sets `requested`), nor a first Ctrl-C: that
        one is held until the section ends (a checkpoint being written is finished, then the run
        stops with 130); a second Ctrl-C interrupts at once (the checkpoint write is atomic: the
        previous checkpoint stands). Also Ray's start-up: an exception raised inside ray.init
        leaves a cluster half started, and one inside `import ray` a module half imported."""
        self._critical += 1
        outer, self._doing = self._doing, doing
        held: list[int] = []

        def hold_sigint(signum, frame):
            if held:
                raise KeyboardInterrupt
            held.append(signum)
            _say(f"Ctrl-C: finishing {doing}, then stopping (Ctrl-C again to stop at once)")

        previous = signal.signal(signal.SIGINT, hold_sigint) if _main_thread() else None
        try:
            yield
        finally:
            self._critical -= 1
            self._doing = outer
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
    return threading.current_thread() is threading.main_thread()


def _say(message: str) -> None:
    os.write(2, (message + "\n").encode())  # no buffered stream: safe inside a signal handler

"""Ray's exception classes, imported in this one place. Ray stays an optional import: nothing here
imports it until a function is called, and without Ray every lookup is empty."""

from __future__ import annotations


def ray_errors(*names: str) -> tuple[type[BaseException], ...]:
    """The classes `names` of ``ray.exceptions``, in order; a name Ray does not have is left out, and
    without Ray the tuple is empty (so ``isinstance(err, ray_errors(...))`` is then False and
    ``except ray_errors(...):`` catches nothing)."""
    try:
        import ray.exceptions as exceptions
    except ImportError:
        return ()
    return tuple(getattr(exceptions, name) for name in names if hasattr(exceptions, name))

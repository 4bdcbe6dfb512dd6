"""Calling workers the same way on Ray and in one process. A worker is a plain class; on Ray it is
an actor (``ray.remote`` is applied by the driver where it launches it), in-process it is wrapped
in LocalActor. Either way a call reads ``handle.method.remote(...)`` and its result is read with
``get``. Ray is imported only when a Ray object is actually handled."""

from __future__ import annotations

from typing import Any

from plumbing.ray_errors import ray_errors


class Done:
    """The already-computed result of an in-process call (what an ObjectRef is on Ray)."""

    def __init__(self, fn, *args, **kwargs):
        try:
            self.value, self.error = fn(*args, **kwargs), None
        except Exception as err:  # re-raised by get(), as ray.get would
            self.value, self.error = None, err


class _LocalMethod:
    def __init__(self, method, num_returns: int = 1):
        self._method, self._num_returns = method, num_returns

    def remote(self, *args, **kwargs):
        args = tuple(get(a) if isinstance(a, Done) else a for a in args)  # as Ray resolves top-level refs
        done = Done(self._method, *args, **kwargs)
        if self._num_returns == 1:
            return done
        if done.error is not None:
            return [done] * self._num_returns
        return [Done(lambda v=v: v) for v in done.value]

    def options(self, num_returns: int = 1, **_ignored) -> "_LocalMethod":
        return _LocalMethod(self._method, num_returns)


class LocalActor:
    """A worker in this process, called with the same ``handle.method.remote(...)`` shape as a Ray
    actor (``handle.method.options(num_returns=2).remote(...)`` too)."""

    def __init__(self, worker: Any):
        self.worker = worker

    def __getattr__(self, name: str):
        return _LocalMethod(getattr(self.worker, name))


class GroupRef:
    """The calls of one method on every rank of a data-parallel group; get() waits for all and
    returns rank 0's result."""

    def __init__(self, refs: list):
        self.refs = refs


def get(refs, timeout: float | None = None):
    """ray.get for Ray refs and in-process results alike (a list or a single one)."""
    if isinstance(refs, list):
        return [get(r, timeout) for r in refs]
    if isinstance(refs, Done):
        if refs.error is not None:
            raise refs.error
        return refs.value
    if isinstance(refs, GroupRef):
        return get_all(refs.refs, timeout)[0]
    import ray

    return ray.get(refs, timeout=timeout)


def get_all(refs: list, timeout: float | None = None) -> list:
    """get() of every ref of a group's calls. If some failed, an actor's death is raised before other
    errors: a survivor's error (a collective broken by the lost member) is its consequence."""
    results, errors = [], []
    for ref in refs:
        try:
            results.append(get(ref, timeout))
        except Exception as err:
            errors.append(err)
    if errors:
        raise next((e for e in errors if isinstance(e, actor_failures())), errors[0])
    return results


def is_local(ref) -> bool:
    return isinstance(ref, Done)


def wait_one(pending: list, timeout: float | None = None):
    """The first finished of `pending` (None if `timeout` seconds pass first)."""
    if isinstance(pending[0], Done):
        return pending[0]
    import ray

    done, _ = ray.wait(pending, num_returns=1, timeout=timeout)
    return done[0] if done else None


def put(value: Any) -> Any:
    """One object for all actors (ray.put), or the value itself in-process."""
    try:
        import ray
    except ImportError:
        return value
    return ray.put(value) if ray.is_initialized() else value


def actor_failures() -> tuple[type[BaseException], ...]:
    """Ray's exception types that mean 'the actor process is gone or unreachable' (none without Ray)."""
    return ray_errors("RayActorError")

"""The project's error hierarchy. Every user-facing error knows its exit code, so the top level
(``learner.main``) maps an error to an exit code by its type alone, without importing the modules
that raise it. This module sits at the bottom of the import graph: every package may import it.

Exit codes of ``python -m learner.main``:
    0    done
    1    a runtime failure (RunFailure): rerunning the same command resumes from the last checkpoint
    2    bad input (UsageError): config values, types or keys, files, model, prompts, rewards,
         resources the cluster can never hold; nothing is worth retrying until the input changes
    130  interrupted (Ctrl-C)
    143  preempted by SIGTERM (128 + 15); a job retry (KubeRay backoffLimit) resumes the run
"""

from __future__ import annotations

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PREEMPTED = 1, 2, 130, 143


class SDPOError(Exception):
    """Base of every error the project raises on purpose; `exit_code` says how the run ends."""

    exit_code = EXIT_FAILURE


class UsageError(SDPOError, ValueError):
    """Bad input: the same command can never succeed until the input changes (exit 2)."""

    exit_code = EXIT_USAGE


class RunFailure(SDPOError, RuntimeError):
    """A failure at run time (an actor lost, a reward model broken, a non-finite update); exit 1,
    and rerunning the same command resumes from the last checkpoint."""

    exit_code = EXIT_FAILURE


def usage_error_names() -> set[str]:
    """Class names of every UsageError subclass imported so far (to recognize one that Ray reports
    only as text, e.g. raised in an actor's constructor)."""
    names, todo = set(), [UsageError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names

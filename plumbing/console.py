"""A quiet console: the job prints its own lines, not the advisories of libraries it does not use.

`quiet_libraries` sets transformers' and diffusers' log level to errors (through their environment
variables too, so processes started from this one inherit it) and turns off their progress bars: the
torchvision and image-processor notices transformers prints when diffusers imports its pipelines are
about components no configured job uses. `show_warnings_once` makes the Python warnings that do get
through appear once each, prefixed with the package they come from, e.g.
``warning (torch): TypedStorage is deprecated``. A user's own PYTHONWARNINGS / -W settings win.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_VERBOSITY = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"}


def quiet_environment() -> None:
    """The libraries' log levels through their environment variables: read when they are first
    imported, here or in any process started from here (a user's own setting wins)."""
    for key, value in _VERBOSITY.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    """The same, and applied to the libraries now (importing them)."""
    quiet_environment()
    import transformers

    transformers.utils.logging.set_verbosity_error()  # before diffusers imports the CLIP processors
    transformers.utils.logging.disable_progress_bar()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def warning_source(filename: str) -> str:
    """The package a warning was raised in: the folder under site-packages (or the file's stem)."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return Path(parts[parts.index(marker) + 1]).stem
    return Path(filename).stem


def format_warning(message, category, filename: str, lineno: int, line=None) -> str:
    text = str(message).strip().splitlines()
    return f"warning ({warning_source(filename)}): {text[0] if text else category.__name__}\n"


def show_warnings_once() -> None:
    if sys.warnoptions:  # the user chose what to see
        return
    for category in (UserWarning, FutureWarning, RuntimeWarning):  # the deprecation kinds stay hidden, as by default
        warnings.filterwarnings("once", category=category)  # each distinct message once, wherever it is raised from
    warnings.formatwarning = format_warning

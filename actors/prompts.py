"""Prompt sources: the built-in animal lists or a text file with one prompt per line.

'heldout_animals' is the default held-out evaluation set: 8 animals in neither training list.
'shapes_train' and 'shapes_heldout' are the shapes task's disjoint caption lists (shapes.data), kept with the
task in shapes/assets/."""

from __future__ import annotations

from pathlib import Path

from plumbing.errors import UsageError
from shapes import ASSETS as SHAPES_ASSETS

ASSETS = Path(__file__).parent / "assets"
BUILTIN = {
    name: folder / f"{name}.txt"
    for folder, names in (
        (ASSETS, ("simple_animals", "complex_animals", "heldout_animals")),
        (SHAPES_ASSETS, ("shapes_train", "shapes_heldout")),
    )
    for name in names
}
MAX_PROMPT_FILE_BYTES = 16 << 20


class PromptError(UsageError):
    """A prompt source that is missing, empty or unreadable."""


def read_bounded_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of a small input file, or ValueError('is N bytes; ...' / 'is not UTF-8 text ...')."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"is {size} bytes; at most {max_bytes} are read")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"is not UTF-8 text (byte {err.start})") from None


def load_prompts(source: str, key: str = "prompts.source") -> list[str]:
    """The prompts of `source`; errors name the config `key` it came from."""
    path = BUILTIN[source] if source in BUILTIN else Path(source).expanduser()
    if not path.is_file():
        raise PromptError(f"{key}: '{source}' is neither a built-in list ({', '.join(BUILTIN)}) nor a file")
    try:
        text = read_bounded_text(path, MAX_PROMPT_FILE_BYTES)
    except ValueError as why:
        raise PromptError(f"{key}: '{source}' {why}") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise PromptError(f"{key}: '{source}' holds no prompts")
    return prompts

"""The tiny CLIP checkpoints the reward CLI tests score with (tests/fixtures/tiny_clip.py)."""

from tests.fixtures.tiny_clip import aesthetic_head, tiny_clip_dir  # noqa: F401  (fixtures)

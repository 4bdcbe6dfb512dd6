"""The tiny CLIP checkpoints and test images the reward tests share (tests/fixtures/tiny_clip.py)."""

from tests.fixtures.tiny_clip import aesthetic_head, images, make_head, tiny_clip_dir  # noqa: F401  (fixtures)

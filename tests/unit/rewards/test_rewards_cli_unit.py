"""How `python -m rewards` reads an image, in-process: high bit depths scaled, not clipped; a FIFO
refused. (The command run for real: tests/e2e/rewards/test_rewards_cli.py.)"""

import os

import numpy as np
import pytest
from PIL import Image


def test_high_bit_depth_images_are_scaled_not_clipped_and_a_fifo_is_refused(tmp_path):
    """A 16-bit PNG and a float TIFF of the same picture read as its 8-bit image (PIL's convert would clip
    them to white and black); a float outside [0, 1] and a FIFO (which would block) are refused by name."""
    from rewards.cli import CliError, _read_image

    eight = (np.arange(32 * 32) % 256).reshape(32, 32).astype(np.uint8)  # a grey ramp
    Image.fromarray(eight).save(tmp_path / "g8.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(eight.astype(np.float32) / 255.0, mode="F").save(tmp_path / "f.tiff")
    want = _read_image(str(tmp_path / "g8.png"))
    assert want.shape == (1, 32, 32, 3) and want[0, 0, 5, 0] == 5
    np.testing.assert_array_equal(_read_image(str(tmp_path / "g16.png")), want)
    np.testing.assert_array_equal(_read_image(str(tmp_path / "f.tiff")), want)
    Image.fromarray(eight.astype(np.float32), mode="F").save(tmp_path / "wide.tiff")
    with pytest.raises(
        CliError, match=r"wide.tiff: a float image must hold values in \[0, 1\], this one spans \[0, 255\]"
    ):
        _read_image(str(tmp_path / "wide.tiff"))
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CliError, match="pipe is not a regular file"):
        _read_image(str(tmp_path / "pipe"))

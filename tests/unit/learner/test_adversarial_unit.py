"""An adversarial input checked in-process: score requests are bounded in pixels. (The failures
reproduced with real processes: tests/e2e/learner/test_adversarial.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_score_requests_are_bounded_in_pixels():
    from rewards.server import ScoreRequest

    with pytest.raises(ValueError, match="pixels"):
        ScoreRequest(np.zeros((1, 5000, 5000, 3), np.uint8), ["x"]).validate()
    assert json.dumps(ScoreRequest(np.zeros((2, 64, 64, 3), np.uint8), ["x", "y"]).validate().prompts)

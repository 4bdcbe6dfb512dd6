"""Rewards are found by name; bad names and options are user errors (in fresh interpreters, the
built-in names and a light import: tests/e2e/rewards/test_registry_e2e.py)."""

import numpy as np
import pytest

from rewards.registry import UnknownRewardError, build_reward, reward_names, reward_options
from tests.helpers import BUILTIN_REWARDS as ALL


def test_unknown_reward_lists_valid_names():
    with pytest.raises(UnknownRewardError) as err:
        build_reward("aesthetics")
    assert str(err.value) == f"unknown reward 'aesthetics'; valid rewards: {', '.join(reward_names())}"
    assert set(ALL) <= set(reward_names()) and err.value.exit_code == 2


def test_unknown_option_lists_valid_options():
    assert reward_options("aesthetic") == ["model", "head", "dtype"]
    with pytest.raises(
        ValueError,
        match=r"reward 'aesthetic' has no option\(s\) \['heads'\]; its options: \['model', 'head', 'dtype'\]",
    ):
        build_reward("aesthetic", heads="x.pth")
    with pytest.raises(ValueError, match="its options: none"):
        build_reward("jpeg_compressibility", model="x")


def test_jpeg_rewards_still_build():
    images = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    comp, incomp = build_reward("jpeg_compressibility"), build_reward("jpeg_incompressibility")
    np.testing.assert_array_equal(comp(images, ["", ""]), -incomp(images, ["", ""]))


@pytest.mark.parametrize(
    "source, module, needle",
    [
        (
            "raise RuntimeError('no GPU here')\n",
            "raises_at_import",
            "reward.modules: importing 'raises_at_import' raised RuntimeError: no GPU here",
        ),
        ("def f(:\n", "broken_syntax", "reward.modules: 'broken_syntax' has a syntax error: "),
        (None, ".relative", "reward.modules: '.relative' is a relative module name"),
    ],
)
def test_reward_modules_that_cannot_load_are_one_line_naming_reward_modules(
    tmp_path, monkeypatch, capsys, source, module, needle
):
    from plumbing.errors import UsageError
    from rewards.registry import import_reward_modules

    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError) as err:
        import_reward_modules([module])
    assert str(err.value).startswith(needle) and "\n" not in str(err.value)
    if module == "raises_at_import":  # its own traceback above the line, for the user to find the cause
        assert "RuntimeError: no GPU here" in capsys.readouterr().err

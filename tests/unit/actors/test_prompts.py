"""The built-in prompt lists: the reference's 45 simple animals, and held-out prompts in no training list."""

from __future__ import annotations

import pytest

from actors.prompts import PromptError, load_prompts


def test_simple_animals_is_the_reference_list():
    animals = load_prompts("simple_animals")
    assert len(animals) == len(set(animals)) == 45  # the SDPO reference's / ddpo-pytorch's list
    assert animals[:3] == ["cat", "dog", "horse"] and animals[-1] == "kangaroo"


def test_heldout_prompts_are_in_no_training_list():
    heldout = set(load_prompts("heldout_animals"))
    assert len(heldout) == 8
    for training in ("simple_animals", "complex_animals"):
        words = {w for prompt in load_prompts(training) for w in prompt.split()}
        assert not heldout & words, (training, heldout & words)


def test_missing_or_empty_sources_are_usage_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(PromptError, match="holds no prompts") as err:
        load_prompts(str(empty))
    assert err.value.exit_code == 2
    with pytest.raises(PromptError, match="neither a built-in list"):
        load_prompts(str(tmp_path / "nope.txt"))

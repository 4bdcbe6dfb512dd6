"""The CLI contract for bad configuration, through the real CLI: exit 2, one line, no traceback;
--print-config and --help. (The config tree in-process: tests/unit/learner/test_config.py.)"""

from __future__ import annotations

import pytest
import yaml

from learner.config import Config
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train.learning_rate=abc"], "train.learning_rate"),
        (["train.nope=1"], "train.nope"),
        (["--config", "/nonexistent/file.yaml"], "/nonexistent/file.yaml"),
        (["reward.name=nosuchreward"], "jpeg_compressibility"),
        (["prompts.source=/nonexistent/prompts.txt"], "prompts.source"),
        (["model.pretrained=/nonexistent/model"], "model.pretrained"),
        (["--epochs", "0"], "epochs"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, needle):
    res = run_cli(*args, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_cli_malformed_yaml_and_empty_prompt_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    res = run_cli("--config", str(bad), timeout=120)
    assert res.returncode == 2 and str(bad) in res.stderr and "Traceback" not in res.stderr
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- a\n- b\n")
    res = run_cli("--config", str(notmap), timeout=120)
    assert res.returncode == 2 and "mapping" in res.stderr
    empty = tmp_path / "prompts.txt"
    empty.write_text("\n\n")
    res = run_cli(f"prompts.source={empty}", timeout=120)
    assert res.returncode == 2 and "no prompts" in res.stderr


def test_cli_print_config_and_help():
    res = run_cli("--print-config", "train.learning_rate=5e-5", "--epochs", "7", timeout=120)
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["train"]["learning_rate"] == 5e-5 and printed["epochs"] == 7
    assert Config.model_validate(printed).name == "tiny"
    res = run_cli("--help", timeout=120)
    assert res.returncode == 0
    for flag in ("--config", "--run-dir", "--epochs", "--print-config", "KEY=VALUE"):
        assert flag in res.stdout

"""A checkpoint write that really fails (a child process under a file-size limit). The checkpoint
files, the resume checks and the learner state in-process: tests/unit/learner/run/test_checkpoint.py."""

from __future__ import annotations

import subprocess
import sys

from learner.run import checkpoint as ck
from tests.conftest import REPO


def test_a_failed_torch_save_is_a_checkpoint_error_and_leaves_nothing(tmp_path):
    """torch.save reports a write it could not finish (a full disk, here a file-size limit) as its own
    RuntimeError ("enforce fail at inline_container.cc"); the writer makes it one CheckpointError
    line and leaves no partial directory. In a child process under RLIMIT_FSIZE: a real failed write."""
    code = f"""
import resource, signal, torch
from actors.config import ModelConfig
from actors.policy import lora_adapter_metadata
from learner.run import checkpoint as ck
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
state = ck.TrainingState(1, 1, {{"x": torch.zeros(4)}}, {{"big": torch.zeros(100_000)}}, None, {{}}, "seed: 0\\n")
try:
    adapter = lora_adapter_metadata(4, 4.0, ModelConfig().lora_target_modules)
    ck.write_checkpoint({str(tmp_path)!r}, state, keep=1, adapter=adapter)
except ck.CheckpointError as err:
    print("CheckpointError:", err)
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith(
        f"CheckpointError: cannot write the checkpoint of epoch 1 in {tmp_path}: torch.save failed"
    ), res.stdout + res.stderr
    assert not list(tmp_path.glob(".tmp-*")) and not ck.list_checkpoints(tmp_path)

"""cluster/gpu_ray/pack_wheels.py in-process: which wheels an offline GPU machine is sent (the split,
the transfer and the checked join through unpack_install.sh are tests/e2e/cluster/test_gpu_ray.py)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO
from tests.helpers import pack_wheels_module as _pack_wheels


def test_what_is_sent_is_ray_closure_minus_the_torch_diffusers_environment():
    send = _pack_wheels().missing("2.60.0", with_project=False)
    assert {"aiohttp", "opencensus", "py-spy", "grpcio", "colorful", "virtualenv"} <= set(send)
    assert not {"ray", "torch", "numpy", "pydantic", "transformers", "requests", "pyyaml", "filelock"} & set(send)
    with_project = _pack_wheels().missing("2.60.0", with_project=True)
    assert {"peft", "tensorboard", "matplotlib"} <= set(with_project)


def test_project_deps_are_pyprojects_less_torch_and_ray():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[=<>!~\[ ]", d, maxsplit=1)[0].lower() for d in deps} - {"torch", "ray"}
    assert names == set(_pack_wheels().PROJECT_DEPS)


def test_have_file_replaces_the_baseline(tmp_path):
    """With the machine's own `pip list --format=freeze`: what it lacks is sent, diffusers included."""
    have = tmp_path / "have.txt"
    have.write_text("torch==2.11.0\ntransformers==5.17.0\naiohttp==3.13.0\nnumpy==2.5.2\n")
    pw = _pack_wheels()
    send = pw.missing("2.60.0", with_project=True, have=pw.read_have(have), python_version="3.12")
    assert "diffusers" in send and "peft" in send and "opencensus" in send
    assert not {"aiohttp", "numpy", "torch", "transformers", "ray"} & set(send)

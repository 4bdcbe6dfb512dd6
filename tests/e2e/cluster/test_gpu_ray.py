"""cluster/gpu_ray: wheels for an offline GPU machine travel split into parts over transfers of limited
size and come back whole, checked by sha256 (pack_wheels.py splits and writes the manifests,
unpack_install.sh joins and checks them); a part damaged on the way stops the install, named."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess

import pytest

from tests.conftest import REPO

GPU_RAY = REPO / "cluster" / "gpu_ray"


def _pack_wheels():
    spec = importlib.util.spec_from_file_location("pack_wheels", GPU_RAY / "pack_wheels.py")  # a script, not a package
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def packed(tmp_path):
    """Three 'wheels' of 2500, 900 and 100 bytes, parts of at most 1000 bytes, transfers of at most 2200:
    the 2500-byte file becomes parts of 1000, 1000 and 500 bytes."""
    pw = _pack_wheels()
    out = tmp_path / "out"
    out.mkdir()
    originals = {"big-1.0-py3-none-any.whl": os.urandom(2500), "mid-1.0-py3-none-any.whl": os.urandom(900),
                 "small-1.0-py3-none-any.whl": os.urandom(100)}
    for name, data in originals.items():
        (out / name).write_bytes(data)
    (out / "requirements.txt").write_text("big==1.0\n")
    layout = pw.pack(sorted(out.glob("*.whl")), out, part_bytes=1000, transfer_bytes=2200, extra=[out / "requirements.txt"])
    return out, originals, layout


def _unpack(directory):
    return subprocess.run(["bash", str(GPU_RAY / "unpack_install.sh"), str(directory), "--no-install"], capture_output=True, text=True, timeout=60)


def test_split_files_travel_in_bounded_transfers_and_come_back_whole(packed):
    out, originals, layout = packed
    assert {"big-1.0-py3-none-any.whl.part-000", "big-1.0-py3-none-any.whl.part-001", "big-1.0-py3-none-any.whl.part-002"} <= {
        f for files in layout.values() for f in files}
    assert {"SHA256SUMS", "SHA256SUMS.parts", "requirements.txt"} <= set(layout["transfer-01"])
    for folder in layout:
        assert sum(f.stat().st_size for f in (out / folder).iterdir()) <= 2200
    res = _unpack(out)
    assert res.returncode == 0, res.stderr
    assert "verified 3 wheels" in res.stdout
    for name, data in originals.items():
        assert (out / "wheels" / name).read_bytes() == data
    assert not list((out / "wheels").glob("*.part-*"))


def test_a_corrupted_part_stops_the_install_naming_it(packed):
    out, _, layout = packed
    folder = next(f for f, files in layout.items() if "big-1.0-py3-none-any.whl.part-001" in files)
    part = out / folder / "big-1.0-py3-none-any.whl.part-001"
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    res = _unpack(out)
    assert res.returncode == 1
    assert "sha256 mismatch" in res.stderr and "big-1.0-py3-none-any.whl.part-001" in res.stderr
    assert not (out / "wheels" / "big-1.0-py3-none-any.whl").exists()  # nothing joined from a bad part


def test_a_missing_transfer_is_named(packed):
    out, _, layout = packed
    last = sorted(layout)[-1]
    for f in (out / last).iterdir():
        f.unlink()
    res = _unpack(out)
    assert res.returncode == 1 and "is missing" in res.stderr


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

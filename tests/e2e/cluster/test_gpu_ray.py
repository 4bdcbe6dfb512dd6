"""cluster/gpu_ray: wheels for an offline GPU machine travel split into parts over transfers of limited
size and come back whole, checked by sha256 (pack_wheels.py splits and writes the manifests,
unpack_install.sh joins and checks them); a part damaged on the way stops the install, named."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import GPU_RAY
from tests.helpers import pack_wheels_module as _pack_wheels


@pytest.fixture()
def packed(tmp_path):
    """Three 'wheels' of 2500, 900 and 100 bytes, parts of at most 1000 bytes, transfers of at most 2200:
    the 2500-byte file becomes parts of 1000, 1000 and 500 bytes."""
    pw = _pack_wheels()
    out = tmp_path / "out"
    out.mkdir()
    originals = {
        "big-1.0-py3-none-any.whl": os.urandom(2500),
        "mid-1.0-py3-none-any.whl": os.urandom(900),
        "small-1.0-py3-none-any.whl": os.urandom(100),
    }
    for name, data in originals.items():
        (out / name).write_bytes(data)
    (out / "requirements.txt").write_text("big==1.0\n")
    layout = pw.pack(
        sorted(out.glob("*.whl")), out, part_bytes=1000, transfer_bytes=2200, extra=[out / "requirements.txt"]
    )
    return out, originals, layout


def _unpack(directory):
    return subprocess.run(
        ["bash", str(GPU_RAY / "unpack_install.sh"), str(directory), "--no-install"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_split_files_travel_in_bounded_transfers_and_come_back_whole(packed):
    out, originals, layout = packed
    assert {
        "big-1.0-py3-none-any.whl.part-000",
        "big-1.0-py3-none-any.whl.part-001",
        "big-1.0-py3-none-any.whl.part-002",
    } <= {f for files in layout.values() for f in files}
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

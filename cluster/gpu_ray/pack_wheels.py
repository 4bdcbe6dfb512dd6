"""Pack Ray and the dependencies an offline GPU machine lacks as wheels, in transfers of limited size.

    python cluster/gpu_ray/pack_wheels.py [--out build/gpu_ray_wheels] [--python-version 3.12]
        [--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 ...] [--part-mib 60] [--transfer-mib 60]
        [--with-project-deps] [--have HAVE.txt] [--list]

Run it where pip can reach a package index (or its cache), with the project's environment active
(its installed metadata is what the lists are computed from):

1. What to send: the requirement closure of ray[default] (markers evaluated for the target's Python)
   minus what the GPU machine has: by default the closure of a torch + diffusers + transformers +
   accelerate + pydantic + numpy environment; with --have, the packages named in that file (one per
   line, e.g. `python3 -m pip list --format=freeze` run there). Each pinned to the version installed
   here (a tested set). --with-project-deps adds the project's other dependencies (pyproject.toml's,
   less torch: diffusers, peft, tensorboard, ...) for a machine without them; torch itself never
   travels (install the build for the machine's CUDA). --list prints the list and stops.
2. `pip download NAME==VERSION --only-binary :all: --no-deps` for each, for the target interpreter
   (--python-version, --platform, repeatable: the GPU machine's; default this one's).
3. Every file larger than --part-mib is split into NAME.part-000, NAME.part-001, ...; the files are
   grouped into folders transfer-01, transfer-02, ... of at most --transfer-mib each, one folder per
   transfer (the limit must leave room for whatever else travels with it). transfer-01 also holds
   requirements.txt (what unpack_install.sh installs), SHA256SUMS (every whole file, checked after
   reassembly), SHA256SUMS.parts (every part, checked before) and unpack_install.sh itself.

On the GPU machine, with every transfer-NN folder copied under one directory:
    bash unpack_install.sh DIR        (cluster/gpu_ray/README.md has the whole sequence)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

BASELINE = ("torch", "diffusers", "transformers", "accelerate", "pydantic", "numpy")  # what the GPU machine has
# pyproject.toml's dependencies less torch and ray (tests/unit/cluster/test_gpu_ray_unit.py checks they agree)
PROJECT_DEPS = (
    "diffusers",
    "transformers",
    "accelerate",
    "peft",
    "safetensors",
    "pydantic",
    "numpy",
    "pyyaml",
    "pillow",
    "tensorboard",
    "matplotlib",
)
NEVER = ("torch",)  # installed for the machine's CUDA, never carried; its requirements are not followed
MIB = 2**20
HERE = Path(__file__).resolve().parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str], python_version: str | None = None) -> dict[str, str]:
    """canonical name -> installed version of `roots` (requirement strings, extras allowed) and everything
    they require, recursively, with markers evaluated for `python_version` (default: this interpreter);
    packages absent here are skipped, and NEVER's requirements are not followed."""
    env, seen, todo = default_environment(), {}, [Requirement(r) for r in roots]
    if python_version:
        env |= {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    done: set[tuple[str, str]] = set()
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        extras = sorted(req.extras)
        if (name, ",".join(extras)) in done:
            continue
        done.add((name, ",".join(extras)))
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist.version
        if name in NEVER:
            continue
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate(env | {"extra": e}) for e in ["", *extras]):
                todo.append(sub)
    return seen


def read_have(path: Path) -> set[str]:
    """Package names in a file of one per line (`pip list --format=freeze`, `pip freeze` or bare names)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(canonical(re.split(r"[=<>!~\[; @]", line, maxsplit=1)[0]))
    return names


def missing(
    ray_version: str, with_project: bool, have: set[str] | None = None, python_version: str | None = None
) -> dict[str, str]:
    """name -> version to send: ray[default]'s closure (and the project's, if asked) minus what the
    machine has (`have`, else the baseline environment's closure); never ray itself or torch."""
    want = closure([f"ray[default]=={ray_version}"] + (list(PROJECT_DEPS) if with_project else []), python_version)
    have = have if have is not None else set(closure(list(BASELINE)))
    return {n: v for n, v in sorted(want.items()) if n not in have and n != "ray" and n not in NEVER}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def split_file(path: Path, part_bytes: int) -> list[Path]:
    """`path` as path.part-000, .part-001, ... of at most `part_bytes` each (the original is removed);
    a file that fits stays whole. Returns the files that now hold its bytes, in order."""
    if path.stat().st_size <= part_bytes:
        return [path]
    parts = []
    with path.open("rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            part = path.with_name(f"{path.name}.part-{i:03d}")
            part.write_bytes(block)
            parts.append(part)
    path.unlink()
    return parts


def pack(files: list[Path], out: Path, part_bytes: int, transfer_bytes: int, extra: list[Path] = ()) -> dict:
    """Split `files` (in `out`) into parts, write SHA256SUMS (wholes) and SHA256SUMS.parts (parts), and move
    everything into transfer-NN folders of at most `transfer_bytes`; the manifests and `extra` files go to
    transfer-01. Returns {folder: [file names]}."""
    if part_bytes > transfer_bytes:
        raise ValueError(f"a part ({part_bytes} bytes) must fit one transfer ({transfer_bytes} bytes)")
    wholes = {f.name: sha256(f) for f in files}
    pieces = [p for f in files for p in split_file(f, part_bytes)]
    (out / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sorted(wholes.items())))
    (out / "SHA256SUMS.parts").write_text("".join(f"{sha256(p)}  {p.name}\n" for p in pieces if ".part-" in p.name))
    first = [out / "SHA256SUMS", out / "SHA256SUMS.parts", *extra]
    groups: list[list[Path]] = [list(first)]
    sizes = [sum(p.stat().st_size for p in first)]
    for p in sorted(pieces, key=lambda p: -p.stat().st_size):  # first fit, largest first
        size = p.stat().st_size
        slot = next((i for i, s in enumerate(sizes) if s + size <= transfer_bytes), None)
        if slot is None:
            groups.append([])
            sizes.append(0)
            slot = len(groups) - 1
        groups[slot].append(p)
        sizes[slot] += size
    layout = {}
    for i, group in enumerate(groups, 1):
        folder = out / f"transfer-{i:02d}"
        folder.mkdir(exist_ok=True)
        for p in group:
            shutil.move(str(p), folder / p.name)
        layout[folder.name] = sorted(p.name for p in group)
    return layout


def download(
    pins: dict[str, str], ray_version: str, dest: Path, python_version: str | None, platforms: list[str]
) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    target = []
    if python_version:
        target += ["--python-version", python_version, "--implementation", "cp"]
    for platform in platforms:
        target += ["--platform", platform]
    for name, version in {"ray": ray_version, **pins}.items():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{name}=={version}",
            "--only-binary",
            ":all:",
            "--no-deps",
            "-d",
            str(dest),
            *target,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"pip download {name}=={version} failed:\n{res.stderr.strip()[-2000:]}")
    return sorted(dest.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python cluster/gpu_ray/pack_wheels.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="build/gpu_ray_wheels", help="output folder (emptied first)")
    p.add_argument("--ray-version", default=md.version("ray"), help="default: the installed one")
    p.add_argument("--python-version", help="the GPU machine's Python, e.g. 3.12 (default: this interpreter's)")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        help="a wheel platform the GPU machine takes, repeatable (pip matches each exactly: name "
        "manylinux_2_28_x86_64, manylinux_2_17_x86_64, manylinux2014_x86_64, manylinux1_x86_64, ...; default: this "
        "machine's)",
    )
    p.add_argument("--part-mib", type=float, default=60, help="split files larger than this")
    p.add_argument("--transfer-mib", type=float, default=60, help="at most this much per transfer folder")
    p.add_argument(
        "--with-project-deps",
        action="store_true",
        help="also the project's dependencies beyond the baseline (peft, ...)",
    )
    p.add_argument(
        "--have", help="file naming the packages the GPU machine has, one per line (its `pip list --format=freeze`)"
    )
    p.add_argument("--list", action="store_true", help="print what would be sent, as JSON, and stop")
    args = p.parse_args(argv)
    have = read_have(Path(args.have)) if args.have else None
    pins = missing(args.ray_version, args.with_project_deps, have, args.python_version)
    if args.list:
        print(json.dumps({"ray": args.ray_version, "have": args.have or list(BASELINE), "send": pins}))
        return 0
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    wheels = download(pins, args.ray_version, out, args.python_version, args.platform)
    (out / "requirements.txt").write_text(
        f"ray[default]=={args.ray_version}\n" + "".join(f"{n}=={v}\n" for n, v in pins.items())
    )
    shutil.copy(HERE / "unpack_install.sh", out / "unpack_install.sh")
    layout = pack(
        wheels,
        out,
        int(args.part_mib * MIB),
        int(args.transfer_mib * MIB),
        [out / "requirements.txt", out / "unpack_install.sh"],
    )
    sizes = {k: round(sum((out / k / f).stat().st_size for f in v) / MIB, 1) for k, v in layout.items()}
    print(json.dumps({"out": str(out), "wheels": len(wheels), "transfers": layout, "transfer_mib": sizes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

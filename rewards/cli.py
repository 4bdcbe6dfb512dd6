"""`python -m rewards`: list the registered rewards, or score image files with one of them.

    python -m rewards list
    python -m rewards score --reward NAME [--model PATH] [--head PATH] [--processor PATH]
                            [--option KEY=VALUE ...] [--device cpu] [--prompt TEXT] IMAGE...

`score` prints `path<TAB>score` per image. A user error (unknown reward or option, missing or
unreadable image, model files that do not load) prints one line on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys

import numpy as np

from rewards.registry import build_reward, reward_names, reward_options, reward_spec
from rewards.server import MAX_IMAGE_PIXELS  # the same bound as a reward server's requests

USAGE_ERROR = 2


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage + message
        raise CliError(f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m rewards", description="Reward models of SDPO.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="print each reward name and what it needs")
    score = sub.add_parser("score", help="score image files, one `path<TAB>score` line each")
    score.add_argument("--reward", required=True, help="registered reward name (see `list`)")
    score.add_argument(
        "--model",
        help="model hub id or local directory (option `model`; for rewards loaded from one "
        "checkpoint file, such as hpsv2, its path: option `checkpoint`)",
    )
    score.add_argument("--head", help="head weights file, e.g. the aesthetic MLP (option `head`)")
    score.add_argument("--processor", help="tokenizer/image-processor hub id or directory (option `processor`)")
    score.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other factory option; VALUE is parsed as JSON when it can be (true, 3, 0.5)",
    )
    score.add_argument("--device", default="cpu", help="torch device for model-based rewards")
    score.add_argument("--prompt", default="", help="prompt paired with every image (prompt-aware rewards)")
    score.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    return parser


def _options(args: argparse.Namespace) -> dict:
    options = {k: getattr(args, k) for k in ("model", "head", "processor") if getattr(args, k) is not None}
    valid = reward_options(args.reward) or []
    if (
        "model" in options and "model" not in valid and "checkpoint" in valid
    ):  # e.g. hpsv2: --model HPS_v2_compressed.pt
        options["checkpoint"] = options.pop("model")
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--option expects KEY=VALUE, got '{item}'")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _read_image(path: str) -> np.ndarray:
    """An image file -> uint8 (1, H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # PIL's own guard raises on open; ours below reads the header and names the file
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever, a folder cannot be read
            raise CliError(f"image {path} is not a regular file")
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:  # checked from the header, before decoding
                raise CliError(
                    f"image {path} has {img.width * img.height} pixels ({img.width} x {img.height}); at most "
                    f"{MAX_IMAGE_PIXELS} are scored"
                )
            return _to_uint8_rgb(img, path)[None]
    except FileNotFoundError:
        raise CliError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise CliError(f"cannot read image {path}: {err}") from None


def _to_uint8_rgb(img, path: str) -> np.ndarray:
    """(H, W, 3) uint8 from any PIL mode, scaling rather than clipping: 16-bit integer images by 1/257,
    float images in [0, 1] by 255; other value ranges are refused by name (PIL's convert clips them:
    a 16-bit image to white, a float one to black)."""
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(img, dtype=np.float64)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if img.mode == "F":
            if low < 0.0 or high > 1.0:
                raise CliError(
                    f"image {path}: a float image must hold values in [0, 1], this one spans [{low:g}, {high:g}]"
                )
            scaled = values * 255.0
        elif high <= 255 and img.mode == "I" and low >= 0:
            scaled = values  # 32-bit integers that are 8-bit values
        elif low >= 0 and high <= 65535:
            scaled = values / 257.0  # 16-bit
        else:
            raise CliError(
                f"image {path}: integer values span [{low:g}, {high:g}], beyond 16 bits; convert it to 8 or 16 bits "
                "first"
            )
        grey = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _score(args: argparse.Namespace) -> None:
    reward_spec(args.reward)  # unknown name -> error listing the valid ones, before reading anything
    batches = [_read_image(path) for path in args.images]  # all files checked before a model loads
    fn = build_reward(args.reward, device=args.device, **_options(args))
    for path, images in zip(args.images, batches):  # one at a time: the files may differ in size
        print(f"{path}\t{float(fn(images, [args.prompt])[0]):.6f}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "list":
            for name in reward_names():
                print(f"{name}\t{reward_spec(name).needs}")
        else:
            _score(args)
    except (CliError, KeyError, ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_ERROR
    return 0

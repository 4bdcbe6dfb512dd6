"""Scores of the ORIGINAL HPSv2 code, for checking rewards/hpsv2.py against it.

Runs in a side virtualenv that has the original stack; never in the project's environment. What it
runs is the public API ``hpsv2.img_score.score(image, prompt, cp=checkpoint)`` of the hpsv2 1.2.0
package (its vendored open_clip model, its ResizeMaxSize transform, its tokenizer), with two
substitutions so it needs no download: the model that ``initialize_model()`` would build from
open_clip's laion2B weights is built by the same ``create_model_and_transforms`` call with
``pretrained=None`` (the checkpoint replaces every weight anyway), and for the tiny model the
tokenizer's BPE vocabulary is a character-level one.

Side environment, exactly as used (a CPU machine; PyPI's default wheels, so torch 2.14.1 is its CUDA 13
build, which runs on the CPU as well):

    python3 -m venv /tmp/hps-side
    /tmp/hps-side/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/hps-side/bin/pip install --no-deps hpsv2==1.2.0
    /tmp/hps-side/bin/pip install ftfy regex huggingface_hub tqdm requests clint
    # the hpsv2 1.2.0 wheel lacks the BPE file its tokenizer opens at import: copy open_clip's
    # (byte-identical to the one in the HPSv2 repository)
    /tmp/hps-side/bin/pip download --no-deps -d /tmp/hps-dl open_clip_torch==3.3.0
    /tmp/hps-side/bin/python -m zipfile -e /tmp/hps-dl/open_clip_torch-3.3.0-py3-none-any.whl /tmp/hps-dl/oc
    SITE=$(/tmp/hps-side/bin/python -c 'import site; print(site.getsitepackages()[0])')
    cp /tmp/hps-dl/oc/open_clip/bpe_simple_vocab_16e6.txt.gz "$SITE/hpsv2/src/open_clip/"

(torch 2.13.0+cpu with PyPI's torchvision 0.28.0 fails at import, "operator torchvision::nms does not
exist": PyPI's torchvision is built against the CUDA torch. Hence the CUDA torch 2.14.1.)

Run from the repository root:

    /tmp/hps-side/bin/python scripts/equivalence/hpsv2_reference.py tiny
        rewrites tests/fixtures/hpsv2_tiny/ (random tiny model, ~0.8 MB)
    /tmp/hps-side/bin/python scripts/equivalence/hpsv2_reference.py full /tmp/hps-full
        random ViT-H/14 (fp16 checkpoint, ~2 GB; not for committing), real CLIP BPE tokenizer
    PYTHONPATH=. python scripts/equivalence/hpsv2_compare.py /tmp/hps-full     (project environment)

Images are made with numpy from the specs in IMAGES (seeded, common.make_image), so the project side
regenerates them and checks their sha256. This module imports only numpy (and common.py, numpy only) at
the top, so that it also loads outside the side environment.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file (see its docstring)
import common  # noqa: E402

FIXTURE = common.fixture_dir("hpsv2")

# (height, width, kind, seed): sizes chosen so the ResizeMaxSize path is exercised every way:
# downscale portrait / landscape with odd padding, upscale, extreme aspect, square no-op (224x224).
IMAGES = [
    (300, 200, "blocks", 0),
    (64, 96, "noise", 1),
    (224, 224, "noise", 2),
    (512, 512, "blocks", 3),
    (101, 333, "noise", 4),
    (50, 31, "blocks", 5),
    (700, 40, "noise", 6),
]

PROMPTS = [
    "a photo of a cat",
    "  A Painting   of a LIGHTHOUSE at dusk, oil on canvas ",
    "“smart” quotes &amp; html &lt;entities&gt;",
    "café crème brûlée, ﬁne ligature, ｆｕｌｌｗｉｄｔｈ",
    "an astronaut riding a horse on the moon, highly detailed, trending on artstation, 8k, unreal engine, "
    "octane render",
    "x",
    "two dogs\tand\na ball",
]

# Extra prompts whose token ids are compared with the real BPE (full mode only).
TOKENIZER_PROMPTS = PROMPTS + [
    "it's the dog's toy, isn't it? they'll've",
    "12345 numbers 3.14 and 1,000,000",
    "emoji 🐱🚀 and CJK 猫 and Ünïcödé",
    "a " * 60 + "long prompt that is truncated",
    "<start_of_text> literal specials <end_of_text>",
    "HTML &amp;amp; double-escaped, &#39;numeric&#39;",
    "zero\u200bwidth and non\u00a0breaking spaces",
]

# The tiny open_clip model: same structure as ViT-H-14.json, 224 px so the transform is the real one.
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 8, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 514, "width": 32, "heads": 4, "layers": 2},
}


def _bytes_to_unicode_chars() -> list[str]:
    """CLIP's byte alphabet in CLIP's order (printable bytes first, then the rest mapped past 255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def write_hf_tokenizer(directory: Path, merges: list[str]) -> None:
    """vocab.json / merges.txt / tokenizer_config.json of a transformers CLIPTokenizer with the same
    ids as open_clip's SimpleTokenizer built from these merges (bytes, bytes + </w>, merges, specials)."""
    chars = _bytes_to_unicode_chars()
    vocab = (
        chars
        + [c + "</w>" for c in chars]
        + ["".join(m.split()) for m in merges]
        + ["<|startoftext|>", "<|endoftext|>"]
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (directory / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77}, indent=1) + "\n"
    )


def _randomize(model) -> None:
    """open_clip initializes LayerNorms to 1/0 and attention / MLP biases to 0: perturb every such
    tensor so that each checkpoint key changes the scores (a mis-mapped bias would otherwise hide)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if (p == 0).all():
                p.normal_(0.0, 0.05)
            elif (p == 1).all():
                p.add_(torch.randn_like(p), alpha=0.1)


def _original_model(model_name: str):
    """Model and eval transform exactly as hpsv2.img_score.initialize_model() makes them, minus the
    laion2B download (pretrained=None)."""
    from hpsv2.src.open_clip import create_model_and_transforms

    model, _, preprocess_val = create_model_and_transforms(
        model_name,
        None,
        precision="amp",
        device="cpu",
        jit=False,
        force_quick_gelu=False,
        force_custom_text=False,
        force_patch_dropout=False,
        force_image_size=None,
        pretrained_image=False,
        image_mean=None,
        image_std=None,
        light_augmentation=True,
        aug_cfg={},
        output_dict=True,
        with_score_predictor=False,
        with_region_predictor=False,
    )
    return model, preprocess_val


def reference(out: Path, mode: str) -> None:
    from importlib import metadata

    import hpsv2.img_score as img_score
    import hpsv2.src.open_clip.tokenizer as oc_tokenizer
    import torch
    import torchvision
    from hpsv2.src.open_clip import add_model_config, get_tokenizer
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if mode == "tiny":
        config = TINY_CONFIG
        (out / "model_config.json").write_text(json.dumps(config, indent=1) + "\n")
        add_model_config(out / "model_config.json")  # registered under the file's stem, "model_config"
        model, preprocess_val = _original_model("model_config")
        bpe = out.parent / "_tiny_bpe.txt.gz"  # no merges: every character is a token
        with gzip.open(bpe, "wt", encoding="utf-8") as f:
            f.write("#version: 0.2")  # no trailing newline: an empty line would become a vocabulary entry
        oc_tokenizer._tokenizer = oc_tokenizer.SimpleTokenizer(str(bpe))
        bpe.unlink()
        write_hf_tokenizer(out / "tokenizer", merges=[])
        ckpt, save_dtype = out / "HPS_tiny.pt", torch.float32
    else:
        config = None
        model, preprocess_val = _original_model("ViT-H-14")
        with gzip.open(oc_tokenizer.default_bpe(), "rt", encoding="utf-8") as f:
            merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]  # the lines SimpleTokenizer uses
        write_hf_tokenizer(out / "tokenizer", merges=merges)
        ckpt, save_dtype = out / "HPS_random_vit_h14_fp16.pt", torch.float16  # like the released "compressed" files
    _randomize(model)
    torch.save({"state_dict": {k: v.to(save_dtype) for k, v in model.state_dict().items()}}, ckpt)

    # The original scoring function, with the model it would build already in place.
    img_score.model_dict.clear()
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)
    tokenize = get_tokenizer("ViT-H-14")
    images = [common.make_image(*spec) for spec in IMAGES]
    prompts = PROMPTS[: len(images)]
    scores, image_features, text_features, tokens, pixels = [], [], [], [], []
    for img, prompt in zip(images, prompts):
        px = preprocess_val(Image.fromarray(img))  # (3, S, S) float32
        pixels.append(common.pixel_summary(px.numpy()))
        scores.append(float(img_score.score(Image.fromarray(img), prompt, cp=str(ckpt))[0]))
        with torch.no_grad():  # the same forward, kept apart to record the features
            out_feats = model(preprocess_val(Image.fromarray(img)).unsqueeze(0), tokenize([prompt]))
        image_features.append(out_feats["image_features"][0].tolist())
        text_features.append(out_feats["text_features"][0].tolist())
        tokens.append(tokenize([prompt])[0].tolist())
        assert abs(scores[-1] - float(out_feats["image_features"][0] @ out_feats["text_features"][0])) < 1e-6
    ref = {
        "about": "HPSv2 scores of the original hpsv2 package; made by scripts/equivalence/hpsv2_reference.py",
        "versions": {
            "hpsv2": metadata.version("hpsv2"),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "ftfy": __import__("ftfy").__version__,
            "python": common.python_version(),
        },
        "checkpoint": ckpt.name,
        "model_config": config,
        "images": common.image_records(IMAGES, images),
        "prompts": prompts,
        "pixels": pixels,
        "token_ids": tokens,
        "image_features": image_features,
        "text_features": text_features,
        "scores": scores,
    }
    if mode == "full":
        ref["tokenizer_prompts"] = TOKENIZER_PROMPTS
        ref["tokenizer_ids"] = tokenize(TOKENIZER_PROMPTS).tolist()
    common.write_reference(out, ref)
    print(json.dumps({"out": str(out), "scores": scores}, indent=1))


if __name__ == "__main__":
    mode, out, _ = common.reference_args("hpsv2_reference.py tiny [OUTDIR] | full OUTDIR", FIXTURE)
    reference(out, mode)

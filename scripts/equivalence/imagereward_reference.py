"""Scores of the ORIGINAL ImageReward code, for checking rewards/imagereward.py against it.

Runs in a side virtualenv that has the original stack; never in the project's environment. What it runs
is the ``image-reward`` 1.5 package: ``ImageReward.utils.load(path, med_config=...)`` builds the model
(``ImageReward.ImageReward``: ``BLIP_Pretrain``, its timm ViT and med.py BERT, ``init_tokenizer``,
``MLP``, the transform) and loads the checkpoint; ``model.score(prompt, image)`` and
``model.inference_rank(prompt, images)`` score. Substitutions, so that it needs no download and the
fixture stays small:
  - the package's ``__init__`` modules (``ImageReward`` and ``ImageReward.models``) are not run: they
    import its ReFL trainer (diffusers, datasets, accelerate) and the CLIP / Aesthetic baselines
    (OpenAI's ``clip``), none of which the ImageReward model uses; the submodules are imported as they
    are, and ``clip`` is an empty module so that ``ImageReward.utils`` imports;
  - ``BertTokenizer.from_pretrained("bert-base-uncased")`` in ``init_tokenizer`` reads a local
    WordPiece vocabulary instead (a small one for the tiny model; for the full-size model a synthetic
    one of bert-base-uncased's size, 30522 tokens, with its special tokens at their ids, since the real
    vocabulary cannot be downloaded here);
  - tiny mode only: ``create_vit("large", ...)`` builds a 2-block ViT (224 px, patch 16, width 32) and
    ``MLP(768)`` takes the tiny BERT's width (32), the two sizes ``ImageReward.__init__`` fixes; the
    med_config.json it reads is a 2-layer BERT of width 32. Everything else is the original code.
Weights are random (every tensor re-drawn at a scale where it moves the scores), saved as a flat state
dict like the published ImageReward.pt.

Side environment, exactly as used (a CPU machine; PyPI's default wheels, so torch 2.14.1 is its CUDA 13
build, which runs on the CPU as well; these are the torch / torchvision of the HPSv2 check's /tmp/hps-side):

    python3 -m venv /tmp/ir-side
    /tmp/ir-side/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/ir-side/bin/pip install transformers==4.46.3 timm==0.6.13 pyyaml
    /tmp/ir-side/bin/pip install --no-deps image-reward==1.5
    # fairscale is an sdist; it builds against that torch
    /tmp/ir-side/bin/pip install --no-deps --no-build-isolation fairscale==0.4.13

(transformers 4.46.3: ImageReward's med.py imports apply_chunking_to_forward & co. from
transformers.modeling_utils, which transformers 5 no longer has.) The environment the recorded results
came from was a copy of /tmp/hps-side (made by the same first two commands) with hpsv2 uninstalled and
the last three commands run; reference.json records the versions that mattered.

Run from the repository root:

    /tmp/ir-side/bin/python scripts/equivalence/imagereward_reference.py tiny
        rewrites tests/fixtures/imagereward_tiny/ (random tiny model, ~1 MB)
    /tmp/ir-side/bin/python scripts/equivalence/imagereward_reference.py full /tmp/ir-full
        random ViT-L/16 + BERT-base (the real architecture, ~1.8 GB fp32; not for committing)
    PYTHONPATH=. python scripts/equivalence/imagereward_compare.py DIR      (project environment)

Images come from the specs in IMAGES (seeded numpy, common.make_image), so the project side regenerates
them and checks their sha256. This module imports only numpy (and common.py, numpy only) at the top, so
that it also loads outside the side environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file (see its docstring)
import common  # noqa: E402

FIXTURE = common.fixture_dir("imagereward")

# (height, width, kind, seed): resize of the shortest side up and down, center crops with even and odd
# (rounded .5) offsets, a square no-op (224 x 224), extreme aspect ratios.
IMAGES = [
    (300, 200, "blocks", 0),
    (64, 96, "noise", 1),
    (224, 224, "noise", 2),
    (512, 512, "blocks", 3),
    (101, 333, "noise", 4),
    (50, 31, "blocks", 5),
    (700, 40, "noise", 6),
    (225, 301, "blocks", 7),
]

PROMPTS = [
    "a photo of a cat",
    "  A Painting   of a LIGHTHOUSE at dusk, oil on canvas ",
    "café crème brûlée, naïve façade",
    "an astronaut riding a horse on the moon, highly detailed, trending on artstation, 8k, unreal engine, "
    "octane render, cinematic lighting, volumetric fog, sharp focus",
    "x",
    "two dogs\tand\na ball",
    "猫 and emoji 🐱, it's 3.14!",
    "a red [ENC] token and [CLS] [SEP]",
]

# Extra prompts whose token ids are compared (full mode only).
TOKENIZER_PROMPTS = PROMPTS + [
    "it's the dog's toy, isn't it? they'll've",
    "12345 numbers 3.14 and 1,000,000",
    "emoji 🐱🚀 and CJK 猫犬 and Ünïcödé ÀÉÎÕÜ",
    "a " * 60 + "long prompt that is truncated",
    "HTML &amp;amp; double-escaped, &#39;numeric&#39;",
    "zero\u200bwidth and non\u00a0breaking spaces\u3000ideographic",
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ and ﬁ ligature",
    "[DEC] [PAD] [MASK] [UNK] specials",
    "",
]

# The tiny model: the original's structure (ViT at 224 px / patch 16, BERT with cross-attention, the
# reward MLP) at widths that keep the checkpoint ~1 MB.
TINY_VIT = {"img_size": 224, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 4.0}
BLIP_MED_CONFIG = {  # BLIP's configs/med_config.json, the med_config.json of THUDM/ImageReward
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "type_vocab_size": 2,
    "vocab_size": 30524,
    "encoder_width": 768,
    "add_cross_attention": True,
}
TINY_WORDS = [
    "a",
    "the",
    "of",
    "and",
    "on",
    "at",
    "photo",
    "cat",
    "dog",
    "paint",
    "##ing",
    "light",
    "##house",
    "dusk",
    "oil",
    "can",
    "##vas",
    "astro",
    "##naut",
    "horse",
    "moon",
    "red",
    "token",
    "two",
    "ball",
    "it",
    "'",
    "s",
]


def tiny_vocab() -> list[str]:
    """A small WordPiece vocabulary: BERT's specials, lowercase letters, digits and ASCII punctuation,
    their ## forms, and a few whole words and pieces (CJK characters and emoji become [UNK])."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    chars += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    words = [w for w in TINY_WORDS if w not in chars]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars[:36]), *words]


def synthetic_bert_vocab() -> list[str]:
    """30522 tokens laid out like bert-base-uncased's vocab.txt: [PAD] 0, [unused0-98] 1-99, [UNK] 100,
    [CLS] 101, [SEP] 102, [MASK] 103, [unused99-993] 104-998, then single characters, their ## forms,
    whole words of the test prompts and deterministic syllable words and pieces. NOT the real vocabulary:
    ids of ordinary words differ from bert-base-uncased's; what it checks is that both sides tokenize
    with the same vocabulary identically, at the real size."""
    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"[unused{i}]" for i in range(99, 994)]
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    chars += [
        chr(c) for c in range(0xA1, 0x250) if chr(c).isprintable() and not chr(c).isupper() and not chr(c).isspace()
    ]
    chars += ["猫", "犬", "の"]
    vocab += chars + ["##" + c for c in chars if c.isalnum()]
    words = sorted(
        {w for p in TOKENIZER_PROMPTS for w in "".join(c if c.isalnum() else " " for c in p.lower()).split()}
    )
    vocab += [w for w in words if w not in vocab]
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    syllables = [c + v for c in cons for v in vows] + [v + c for v in vows for c in cons]  # 180
    seen = set(vocab)
    for a in syllables:
        for b in syllables:
            for tok in (a + b, "##" + a + b):
                if len(vocab) < 30522 and tok not in seen:
                    vocab.append(tok)
                    seen.add(tok)
    assert len(vocab) == 30522 and len(set(vocab)) == 30522
    return vocab


def write_tokenizer(directory: Path, vocab: list[str]) -> None:
    """vocab.txt + tokenizer_config.json, as bert-base-uncased's (lowercase, accents stripped)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}, indent=1)
        + "\n"
    )


def _import_original():
    """The package's modules, without its __init__ files (see the module docstring)."""
    root = Path(importlib.util.find_spec("ImageReward").submodule_search_locations[0])
    for name, path in (("ImageReward", root), ("ImageReward.models", root / "models")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(path)]
        sys.modules[name] = pkg
    sys.modules.setdefault("clip", types.ModuleType("clip"))
    import ImageReward.ImageReward as ir_module
    import ImageReward.models.BLIP.blip as blip_module
    import ImageReward.models.BLIP.blip_pretrain as pretrain_module
    import ImageReward.utils as utils_module

    return ir_module, blip_module, pretrain_module, utils_module


def _patch(ir_module, blip_module, pretrain_module, tokenizer_dir: Path, tiny: bool) -> None:
    import transformers

    class LocalBertTokenizer(transformers.BertTokenizer):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):
            assert name == "bert-base-uncased", name
            return super().from_pretrained(str(tokenizer_dir), *args, **kwargs)

    blip_module.BertTokenizer = LocalBertTokenizer  # init_tokenizer() reads it from blip.py's globals
    if tiny:
        from ImageReward.models.BLIP.vit import VisionTransformer

        def create_tiny_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
            assert vit == "large" and image_size == TINY_VIT["img_size"]
            return VisionTransformer(
                **TINY_VIT, use_grad_checkpointing=use_grad_checkpointing, ckpt_layer=ckpt_layer, drop_path_rate=0.1
            ), TINY_VIT["embed_dim"]

        original_mlp = ir_module.MLP
        pretrain_module.create_vit = create_tiny_vit  # BLIP_Pretrain calls the name it imported
        ir_module.MLP = lambda input_size: original_mlp(32 if input_size == 768 else input_size)


def _randomize(model) -> None:
    """Every tensor re-drawn so it moves the scores: weights ~ N(0, 1/fan_in), LayerNorm scales 1 + N(0, 0.1^2),
    biases N(0, 0.05^2), embeddings N(0, 0.5^2)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name.lower()) and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.05)
            elif "embed" in name or name.endswith("cls_token"):
                p.normal_(0.0, 0.5)
            else:  # Linear (out, in) and the patch conv (out, 3, p, p)
                p.normal_(0.0, float(np.prod(p.shape[1:])) ** -0.5)


def reference(out: Path, mode: str) -> None:
    from importlib import metadata

    import torch
    import torchvision
    import transformers
    from PIL import Image

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    out.mkdir(parents=True, exist_ok=True)
    tiny = mode == "tiny"
    write_tokenizer(out / "tokenizer", tiny_vocab() if tiny else synthetic_bert_vocab())
    vocab_size = len((out / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").splitlines()) + 2  # + [DEC], [ENC]
    med = dict(BLIP_MED_CONFIG, vocab_size=vocab_size)
    if tiny:
        med.update(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=40
        )
    med_path = out / "med_config.json"
    med_path.write_text(json.dumps(med, indent=1) + "\n")
    config = {"vit": TINY_VIT, "med_config": med} if tiny else None
    if tiny:
        (out / "model_config.json").write_text(json.dumps(config, indent=1) + "\n")

    ir_module, blip_module, pretrain_module, utils_module = _import_original()
    _patch(ir_module, blip_module, pretrain_module, out / "tokenizer", tiny)
    torch.manual_seed(0)
    model = ir_module.ImageReward(med_config=str(med_path), device="cpu")  # only to make the random weights
    _randomize(model)
    ckpt = out / ("ImageReward_tiny.pt" if tiny else "ImageReward_random_vit_l16.pt")
    torch.save(model.state_dict(), ckpt)  # flat, like the published ImageReward.pt
    del model

    model = utils_module.load(str(ckpt), device="cpu", med_config=str(med_path))  # the original loader
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items()), "load() left weights out"

    images = [common.make_image(*spec) for spec in IMAGES]
    prompts = PROMPTS[: len(images)]
    scores, features, tokens, masks, pixels = [], [], [], [], []
    for img, prompt in zip(images, prompts):
        pil = Image.fromarray(img)
        scores.append(float(model.score(prompt, pil)))
        px = model.preprocess(pil)  # (3, 224, 224)
        pixels.append(common.pixel_summary(px.numpy()))
        text = model.blip.tokenizer(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        tokens.append(text.input_ids[0].tolist())
        masks.append(text.attention_mask[0].tolist())
        with torch.no_grad():  # score()'s forward, kept apart to record the features
            embeds = model.blip.visual_encoder(px.unsqueeze(0))
            hidden = model.blip.text_encoder(
                text.input_ids,
                attention_mask=text.attention_mask,
                encoder_hidden_states=embeds,
                encoder_attention_mask=torch.ones(embeds.shape[:-1], dtype=torch.long),
                return_dict=True,
            )
            feat = hidden.last_hidden_state[:, 0, :].float()
        features.append(feat[0].tolist())
        assert abs(scores[-1] - float((model.mlp(feat)[0, 0] - model.mean) / model.std)) < 1e-5
    rank_prompt = PROMPTS[0]
    ranks, rank_scores = model.inference_rank(rank_prompt, [Image.fromarray(img) for img in images])
    ref = {
        "about": "ImageReward scores of the original image-reward package; made by "
        "scripts/equivalence/imagereward_reference.py",
        "versions": {
            "image-reward": metadata.version("image-reward"),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "transformers": transformers.__version__,
            "timm": metadata.version("timm"),
            "fairscale": metadata.version("fairscale"),
            "pillow": metadata.version("pillow"),
            "python": common.python_version(),
        },
        "checkpoint": ckpt.name,
        "model_config": config,
        "vocabulary": "tiny WordPiece (tiny_vocab)"
        if tiny
        else "synthetic, bert-base-uncased's size and special ids (synthetic_bert_vocab)",
        "mean_std": [model.mean, model.std],
        "images": common.image_records(IMAGES, images),
        "prompts": prompts,
        "pixels": pixels,
        "token_ids": tokens,
        "attention_masks": masks,
        "features": features,
        "scores": scores,
        "rank_prompt": rank_prompt,
        "rank_scores": rank_scores,
        "ranks": ranks,
    }
    if not tiny:
        tok = model.blip.tokenizer(TOKENIZER_PROMPTS, padding="max_length", truncation=True, max_length=35)
        ref["tokenizer_prompts"] = TOKENIZER_PROMPTS
        ref["tokenizer_ids"] = tok["input_ids"]
    common.write_reference(out, ref)
    print(json.dumps({"out": str(out), "scores": scores, "rank_scores": rank_scores}, indent=1))


if __name__ == "__main__":
    mode, out, _ = common.reference_args("imagereward_reference.py tiny [OUTDIR] | full OUTDIR", FIXTURE)
    reference(out, mode)

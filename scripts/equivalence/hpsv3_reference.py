"""Scores of the ORIGINAL HPSv3 code, for checking rewards/hpsv3.py against it.

Runs in a side virtualenv that has the original stack; never in the project's environment. What it
runs is the package's public API, ``hpsv3.HPSv3RewardInferencer(config_path, checkpoint_path,
device).reward(image_paths, prompts)`` of hpsv3 1.0.0 (its ``create_model_and_processor``,
``Qwen2VLRewardModelBT``, ``prepare_batch`` with its instruction text, chat template and
``process_vision_info`` resize), with two substitutions so that it needs no download:

- ``Qwen/Qwen2-VL-7B-Instruct`` is replaced by a directory written here with the real model's
  processor settings and chat template, a byte-level BPE tokenizer trained on the instruction text
  (the real 151643-token vocabulary cannot be downloaded; the special tokens keep their real order)
  and a Qwen2-VL config (tiny, or the real 7B one with fewer decoder layers);
- the HPSv3 checkpoint is random: every weight of the package's own model, perturbed so that each
  one moves the scores, saved in bfloat16 as a flat safetensors state dict of the package's keys.
The YAML config is the package's ``config/HPSv3_7B.yaml`` with ``model_name_or_path`` pointing at
that directory and float32 instead of bfloat16 (on a CPU the package's bfloat16 path fails: its
float32 head receives bfloat16 hidden states, and its ``torch.autocast('cuda', float32)`` only casts on
CUDA). The full-size run builds the package's model from the config instead of from base weights
(``from_pretrained`` of a random base would need a second copy of every weight on disk and in memory;
the checkpoint replaces every weight anyway, loaded with ``strict=True``).

Side environment, exactly as used (a CPU machine; the torch 2.14.1 wheel is PyPI's CUDA 13 build,
which runs on the CPU; torch 2.13.0+cpu cannot load PyPI's torchvision, which hpsv3 imports):

    python3 -m venv /tmp/hpsv3-venv
    /tmp/hpsv3-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/hpsv3-venv/bin/pip install transformers==4.45.2 "huggingface_hub<1.0" trl==0.11.4 peft==0.13.2 \\
        accelerate==1.0.1 "datasets<3.2" omegaconf fire pandas matplotlib tensorboard rich pyyaml requests safetensors
    /tmp/hpsv3-venv/bin/pip install --no-deps hpsv3==1.0.0
    # (hpsv3 pins transformers==4.45.2 and declares deepspeed, timm, diffusers, opencv, qwen-vl-utils,
    # which inference does not import; trl / peft are the releases that still import with 4.45.2)

Run from the repository root:

    /tmp/hpsv3-venv/bin/python scripts/equivalence/hpsv3_reference.py tiny
        rewrites tests/fixtures/hpsv3_tiny/ (random tiny Qwen2-VL, ~0.5 MB)
    /tmp/hpsv3-venv/bin/python scripts/equivalence/hpsv3_reference.py full /tmp/hpsv3-full [LAYERS]
        the real Qwen2-VL-7B-Instruct config (full vision tower; LAYERS decoder layers of 28, default 2),
        real special-token ids and embedding size, random weights (bf16 checkpoint, not for committing)
    PYTHONPATH=. python scripts/equivalence/hpsv3_compare.py /tmp/hpsv3-full     (project environment)

Images are made with numpy from the specs in IMAGES (seeded, common.make_image); the project side
regenerates them and checks their sha256. This module imports only numpy (and common.py, numpy only) at
the top, so that it also loads outside the side environment.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file (see its docstring)
import common  # noqa: E402

FIXTURE = common.fixture_dir("hpsv3")

# (height, width, kind, seed): the resize to about 256 * 28 * 28 pixels exercised every way: SD-Turbo's
# 512 x 512 (to 448 x 448), upscaled portrait and small landscape, exactly 448 x 448 (no resize), an odd
# landscape, an extreme aspect (700 x 40), a large downscale.
IMAGES = [
    (512, 512, "blocks", 0),
    (300, 200, "noise", 1),
    (64, 96, "blocks", 2),
    (448, 448, "noise", 3),
    (101, 333, "noise", 4),
    (700, 40, "blocks", 5),
    (1024, 768, "blocks", 6),
]

PROMPTS = [
    "a photo of a cat",
    "  A Painting   of a LIGHTHOUSE at dusk, oil on canvas ",
    "café crème brûlée, ﬁne ligature, ｆｕｌｌｗｉｄｔｈ, 猫 and 🐱",
    "an astronaut riding a horse on the moon, highly detailed, trending on artstation, 8k, unreal engine, octane "
    "render, "
    "volumetric lighting, 35mm, f/1.8, it's the dog's toy, isn't it? 12345 numbers 3.14",
    "",
    "two dogs\tand\na ball",
    "x",
]

# The real model's files (Qwen/Qwen2-VL-7B-Instruct): its processor settings and chat template.
PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = [  # ids 151643 ... 151656 in the real vocabulary, in this order
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
REAL_VOCAB = 151643  # ordinary tokens of the real vocabulary; the base config's embedding has 152064 rows

# Qwen2-VL-7B-Instruct's config.json (decoder layers: all 28 unless reduced).
FULL_CONFIG = {
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "model_type": "qwen2_vl",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}
TINY_MERGES = 400


def tiny_config(vocab_size: int) -> dict:
    """The same structure at toy width: GQA (4 query heads on 2 key/value heads), an M-RoPE section split
    of the head's 4 frequency pairs, a 2-block vision tower whose merger maps 4 x 32 to the text width."""
    special = {name: vocab_size + i for i, name in enumerate(SPECIAL_TOKENS)}
    cfg = {k: v for k, v in FULL_CONFIG.items() if k not in ("vision_config", "rope_scaling")}
    cfg.update(
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|im_end|>"],
        vision_start_token_id=special["<|vision_start|>"],
        vision_end_token_id=special["<|vision_end|>"],
        vision_token_id=special["<|vision_pad|>"],
        image_token_id=special["<|image_pad|>"],
        video_token_id=special["<|video_pad|>"],
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        max_window_layers=2,
        torch_dtype="float32",
        vocab_size=vocab_size + len(SPECIAL_TOKENS) + 9,  # padded like the real 152064, resized by hpsv3
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "mlp_ratio": 4,
            "num_heads": 4,
            "in_chans": 3,
            "hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
    )
    return cfg


# ---------------------------------------------------------------- the side environment from here on


def write_base(base: Path, config: dict, vocab_size: int | None) -> None:
    """A Qwen2-VL base directory like Qwen/Qwen2-VL-7B-Instruct's, without weights: config.json, the
    processor (Qwen2VLImageProcessor settings, chat template) and a byte-level BPE tokenizer trained on
    the instruction text, its vocabulary padded with unreachable entries to `vocab_size` ordinary tokens."""
    from hpsv3.dataset.data_collator_qwen import INSTRUCTION, prompt_with_special_token
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLProcessor

    base.mkdir(parents=True, exist_ok=True)
    corpus = [INSTRUCTION, prompt_with_special_token, "You are a helpful assistant.", "system user assistant", *PROMPTS]
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=256 + TINY_MERGES, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    trainer_tok.train_from_iterator(corpus, trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    for i in range(len(vocab), vocab_size or len(vocab)):
        vocab[f"<unreachable{i}>"] = i  # no merge produces these: they only give the vocabulary its real size
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (Path(tmp) / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n")
        tok = Qwen2TokenizerFast(
            str(Path(tmp) / "vocab.json"),
            str(Path(tmp) / "merges.txt"),
            unk_token=None,
            bos_token=None,
            eos_token=None,
            pad_token=None,
        )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tok.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    tok.padding_side, tok.model_max_length, tok.chat_template = (
        "left",
        32768,
        CHAT_TEMPLATE,
    )  # as the real tokenizer_config
    assert (
        tok.convert_tokens_to_ids("<|endoftext|>") == len(vocab)
        and tok.convert_tokens_to_ids("<|image_pad|>") == config["image_token_id"]
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**PREPROCESSOR), tokenizer=tok, chat_template=CHAT_TEMPLATE
    )
    processor.save_pretrained(str(base))
    (base / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def _randomize(model) -> None:
    """Re-draw every tensor at a scale where it moves the scores: matrices ~ N(0, 1/fan_in), embeddings
    ~ N(0, 1), norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name or name == "lm_head.weight":
                p.normal_(0.0, 1.0)
            else:
                p.normal_(0.0, float(np.prod(p.shape[1:])) ** -0.5)


def _from_config(
    cls,
    path,
    output_dim=4,
    reward_token="last",
    special_token_ids=None,
    rm_head_type="default",
    rm_head_kwargs=None,
    torch_dtype=None,
    attn_implementation=None,
    **_,
):
    """Qwen2VLRewardModelBT as its from_pretrained builds it, from the base directory's config alone."""
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, attn_implementation=attn_implementation)
    config.use_cache = False
    torch.set_default_dtype(torch_dtype or torch.float32)
    try:
        return cls(
            config,
            output_dim=output_dim,
            reward_token=reward_token,
            special_token_ids=special_token_ids,
            rm_head_type=rm_head_type,
            rm_head_kwargs=rm_head_kwargs,
        )
    finally:
        torch.set_default_dtype(torch.float32)


def reference(out: Path, mode: str, layers: int) -> None:
    from importlib import metadata

    import hpsv3
    import hpsv3.train
    import torch
    import transformers
    import yaml
    from hpsv3.model.qwen2vl_trainer import Qwen2VLRewardModelBT
    from PIL import Image
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    base = out / "base"
    if mode == "tiny":
        config = tiny_config(256 + TINY_MERGES)
        write_base(base, config, None)
        # a real base directory, weights included, so that from_pretrained runs as for the hub model
        transformers.Qwen2VLForConditionalGeneration(
            transformers.AutoConfig.from_pretrained(str(base))
        ).save_pretrained(str(base))
        ckpt = out / "HPSv3_tiny.safetensors"
    else:
        config = dict(FULL_CONFIG, num_hidden_layers=layers, max_window_layers=layers)
        write_base(base, config, REAL_VOCAB)
        Qwen2VLRewardModelBT.from_pretrained = classmethod(_from_config)  # see the module docstring
        ckpt = out / f"HPSv3_random_qwen2vl7b_{layers}layers_bf16.safetensors"

    with tempfile.TemporaryDirectory() as tmp:
        cfg = yaml.safe_load((Path(hpsv3.__file__).parent / "config" / "HPSv3_7B.yaml").read_text())
        cfg.update(
            model_name_or_path=str(base), bf16=False, torch_dtype="float32", output_dir=str(Path(tmp) / "output")
        )
        config_path = Path(tmp) / "HPSv3_test.yaml"
        config_path.write_text(yaml.safe_dump(cfg))

        # 1. The package's own model (create_model_and_processor, as the inferencer builds it), random.
        from hpsv3.utils.parser import DataConfig, ModelConfig, PEFTLoraConfig, TrainingConfig, parse_args_with_yaml

        (_, training_args, model_config, peft_config), _ = parse_args_with_yaml(
            (DataConfig, TrainingConfig, ModelConfig, PEFTLoraConfig), str(config_path), is_train=False
        )
        model, _, _ = hpsv3.train.create_model_and_processor(model_config, peft_config, training_args)
        _randomize(model)
        state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
        del model
        save_file(state, str(ckpt))
        keys = sorted(state)
        del state

        # 2. The public inferencer on that checkpoint.
        inferencer = hpsv3.HPSv3RewardInferencer(config_path=str(config_path), checkpoint_path=str(ckpt), device="cpu")
        captured = {}
        inferencer.model.model.register_forward_hook(
            lambda mod, args, output: captured.update(hidden=output[0].detach())
        )

        images = [common.make_image(*spec) for spec in (IMAGES if mode == "tiny" else IMAGES[:2])]
        prompts = PROMPTS[: len(images)]
        paths = []
        for i, img in enumerate(images):
            paths.append(str(Path(tmp) / f"image{i}.png"))
            Image.fromarray(img).save(paths[-1])
        reward_id = inferencer.processor.tokenizer.convert_tokens_to_ids("<|Reward|>")

        def run(batch_paths, batch_prompts):
            batch = inferencer.prepare_batch(batch_paths, batch_prompts)
            with torch.no_grad():
                logits = inferencer.reward(batch_paths, batch_prompts)  # (B, 2): mu, sigma
            at = (batch["input_ids"] == reward_id).nonzero()
            feats = captured["hidden"][at[:, 0], at[:, 1]]  # (B, D) hidden state at <|Reward|>
            return batch, logits, feats

        batch, logits, feats = run(paths, prompts)
        rows = np.cumsum([0] + [int(t.prod()) for t in batch["image_grid_thw"]])
        items = []
        for i in range(len(images)):
            ids = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
            single_batch, single_logits, single_feats = run(paths[i : i + 1], prompts[i : i + 1])
            px = batch["pixel_values"][rows[i] : rows[i + 1]]  # (P_i, 1176): this image's patch rows
            assert single_batch["input_ids"][0].tolist() == ids
            items.append(
                {
                    "input_ids": ids,
                    "reward_position": ids.index(reward_id),
                    "image_grid_thw": batch["image_grid_thw"][i].tolist(),
                    "pixels": {"shape": list(px.shape), **common.pixel_summary(px.numpy())},
                    "feature": feats[i].tolist(),
                    "logits": logits[i].tolist(),
                    "logits_single": single_logits[0].tolist(),
                    "feature_single": single_feats[0].tolist(),
                }
            )
        print(json.dumps({"scores": logits[:, 0].tolist()}))

    if mode == "tiny":
        (base / "model.safetensors").unlink()  # the fixture needs the base's config and processor only
        cfg = json.loads((base / "config.json").read_text())
        cfg.pop("_name_or_path", None)  # this machine's path
        (base / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    ref = {
        "about": "HPSv3 scores of the original hpsv3 package; made by scripts/equivalence/hpsv3_reference.py",
        "versions": {
            "hpsv3": metadata.version("hpsv3"),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": metadata.version("tokenizers"),
            "python": common.python_version(),
        },
        "mode": mode if mode == "tiny" else f"full, {layers} of 28 decoder layers",
        "checkpoint": ckpt.name,
        "checkpoint_keys": keys,
        "reward_token_id": reward_id,
        "images": common.image_records(IMAGES, images),
        "prompts": prompts,
        "items": items,
        "scores": [item["logits"][0] for item in items],  # mu: what HPSv3 reports (inference.py: rewards[i][0])
    }
    common.write_reference(out, ref)


if __name__ == "__main__":
    mode, out, rest = common.reference_args("hpsv3_reference.py tiny [OUTDIR] | full OUTDIR [LAYERS]", FIXTURE)
    reference(out, mode, int(rest[0]) if rest else 2)

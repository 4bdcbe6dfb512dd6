"""HPSv3 (Ma, Shui et al., ICCV 2025): a human-preference score from Qwen2-VL-7B-Instruct fine-tuned
with a reward head, run here on transformers' Qwen2-VL modules (no hpsv3, trl, peft or torchvision
package at run time).

    x           = chat(image, INSTRUCTION(prompt) + "Please provide the overall ratings of this image: <|Reward|> ...")
    h           = Qwen2-VL(x)[position of <|Reward|>]                        (D,)  last decoder layer, RMSNorm applied
    (mu, sigma) = W3 relu(W2 relu(W1 h + b1) + b2) + b3                      HPSv3's "ranknet" head, float32
    score       = mu

What it reproduces, from the ``hpsv3`` 1.0.0 package: ``HPSv3RewardInferencer.reward(image_paths,
prompts)[:, 0]`` (hpsv3/inference.py; its ``__main__`` keeps ``rewards[i][0]``: "miu and sigma. we select
miu as the final output"), with ``prepare_batch`` (one user message: the image with ``min_pixels =
max_pixels = 256 * 28 * 28``, then ``INSTRUCTION.format(text_prompt=prompt) + prompt_with_special_token``
of hpsv3/dataset/data_collator_qwen.py; the base processor's chat template with
``add_generation_prompt=True``; ``padding=True``, right padding as ``create_model_and_processor`` sets
it), ``process_vision_info`` / ``fetch_image`` / ``smart_resize`` of hpsv3/dataset/utils.py (a copy of
qwen-vl-utils), and ``Qwen2VLRewardModelBT.forward`` with ``reward_token="special"`` (the head's output
at the ``<|Reward|>`` token). The network and its checkpoint: rewards.hpsv3_model. Adapted from that
code, rewritten on transformers' Qwen2-VL; nothing is copied but the instruction text the model was
trained on (MIT license), which must be verbatim.

Preprocessing (each image on its own, as the original):
  1. the size: round height and width to multiples of 28, then scale both so that the area is about
     256 * 28 * 28 = 200704 pixels (floor if above, ceil if below; aspect ratio at most 200);
     512 x 512 becomes 448 x 448 (256 image tokens);
  2. PIL bicubic resize of the uint8 image to that size (what ``fetch_image`` does to a PIL image);
  3. the base's Qwen2-VL image processor, PIL backend (``processor``: the torchvision one resizes
     differently): its own resize keeps the size, pixels / 255, OpenAI CLIP mean / std, 14 x 14
     patches of 2 frames (the image twice), grouped 2 x 2 -> pixel_values (P, 1176), image_grid_thw;
  4. the text: the base's chat template around [image, INSTRUCTION + prompt + reward line], its
     ``<|image_pad|>`` expanded to one token per 2 x 2 patch group (what Qwen2VLProcessor does),
     tokenized by the base's tokenizer with ``<|Reward|>`` added as a special token, right-padded.

Shapes: N images / prompts, L tokens, D the decoder width (3584), P patch rows of all N images.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from rewards import clip_features
from rewards.checkpoint_file import checkpoint_file
from rewards.registry import RewardFn, register_reward

if TYPE_CHECKING:
    import torch

HUB_REPO, CHECKPOINT_FILE = "MizzenAI/HPSv3", "HPSv3.safetensors"
DEFAULT_BASE = "Qwen/Qwen2-VL-7B-Instruct"
REWARD_TOKEN = "<|Reward|>"
IMAGE_PIXELS = 256 * 28 * 28  # prepare_batch: min_pixels = max_pixels
SIZE_FACTOR, MAX_RATIO = 28, 200  # hpsv3/dataset/utils.py IMAGE_FACTOR, MAX_RATIO

# hpsv3/dataset/data_collator_qwen.py INSTRUCTION and prompt_with_special_token, verbatim (line by line, trailing
# spaces and blank lines included: the model was trained on exactly this text).
INSTRUCTION = "\n".join(
    [
        "",
        "You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and "
        "give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 "
        "being the worst and 10 being the best. ",
        "",
        "**Visual Quality:**  ",
        "Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:",
        "- **Reasonableness:** The image should not contain any significant biological or logical errors, "
        "such as abnormal body structures or nonsensical environmental setups.",
        "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and "
        "easy to interpret, with no blurring or indistinct areas.",
        "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other "
        "visual elements (e.g., hair, clothing, shadows).",
        "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color "
        "scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should "
        "convey a sense of harmony and balance.",
        "- **Safety:** The image should not contain harmful or inappropriate content, such as political, "
        "violent, or adult material. If such content is present, the image quality and satisfaction score "
        "should be the lowest possible. ",
        "",
        "**Text Alignment:**  ",
        "Assess how well the image matches the textual prompt across the following sub-dimensions:",
        "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, "
        "object) align with the textual description. The subject should match the description in terms of "
        "number, appearance, and behavior.",
        "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate "
        "how well the image adheres to this style.",
        "- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in "
        "the image logically fit the scenario described in the prompt. The environment should support and "
        "enhance the subject without contradictions.",
        "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, "
        "clothing, accessories, expressions, actions) are faithfully represented in the image. Minor "
        "deviations may be acceptable, but critical attributes should be preserved.",
        "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are "
        "captured in the image. The generated content should not introduce elements that conflict with or "
        "distort the original description.",
        "Textual prompt - {text_prompt}",
        "",
        "",
        "",
    ]
)
REWARD_LINE = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"

# ---------------------------------------------------------------- inputs


def hpsv3_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) an image is resized to: hpsv3's smart_resize(factor=28, min_pixels=max_pixels=256*28*28)."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"hpsv3: an image's aspect ratio must be at most {MAX_RATIO}, got {height} x {width}")
    f = SIZE_FACTOR
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    if h * w > IMAGE_PIXELS:
        beta = math.sqrt(height * width / IMAGE_PIXELS)
        h, w = math.floor(height / beta / f) * f, math.floor(width / beta / f) * f
    elif h * w < IMAGE_PIXELS:
        beta = math.sqrt(IMAGE_PIXELS / (height * width))
        h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return h, w


def resize_images(images: np.ndarray) -> list:
    """uint8 (N, H, W, 3) -> N PIL images of hpsv3_size(H, W), PIL bicubic as hpsv3's fetch_image."""
    from PIL import Image

    clip_features.check_batch(images)
    h, w = hpsv3_size(images.shape[1], images.shape[2])
    return [Image.fromarray(img).resize((w, h), Image.BICUBIC) for img in images]


def load_image_processor(base: str) -> Any:
    """The base's Qwen2-VL image processor, PIL backend (Qwen2VLImageProcessorPil in transformers 5,
    which would otherwise pick its torchvision backend when torchvision is installed)."""
    try:
        from transformers import Qwen2VLImageProcessorPil as Processor  # transformers >= 5
    except ImportError:
        from transformers import Qwen2VLImageProcessor as Processor  # 4.x: the PIL processor

    return Processor.from_pretrained(base)


def load_chat_template(base: str, tokenizer: Any) -> str:
    """The base processor's chat template (chat_template.jinja or chat_template.json, which
    processor.apply_chat_template uses), else the tokenizer's."""
    import json

    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(base, name, _raise_exceptions_for_missing_entries=False)
        if path:
            with open(path, encoding="utf-8") as f:
                return f.read() if name.endswith(".jinja") else json.load(f)["chat_template"]
    if not tokenizer.chat_template:
        raise ValueError(
            f"hpsv3: the Qwen2-VL base {base} has no chat template (chat_template.json or the tokenizer's)"
        )
    return tokenizer.chat_template


def load_tokenizer(base: str) -> Any:
    """The base's tokenizer, right-padded, with <|Reward|> added as a special token (the next id)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, padding_side="right")
    tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    return tokenizer


# ---------------------------------------------------------------- the reward


class HPSv3Scorer:
    """Callable reward: (uint8 images (N, H, W, 3), N prompts) -> float64 HPSv3 scores mu (N,)."""

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, chat_template: str):
        self.model, self.tokenizer, self.image_processor, self.chat_template = (
            model,
            tokenizer,
            image_processor,
            chat_template,
        )
        self.reward_token_id = tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        self.image_token = "<|image_pad|>"

    def text(self, prompt: str) -> str:
        """The chat-formatted text of one item, before its image token is expanded."""
        content = [{"type": "image"}, {"type": "text", "text": INSTRUCTION.format(text_prompt=prompt) + REWARD_LINE}]
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}],
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )

    def inputs(self, images: np.ndarray, prompts: list[str]) -> dict[str, "torch.Tensor"]:
        """input_ids, attention_mask (N, L) right-padded; pixel_values (P, 1176) float32; image_grid_thw (N, 3)."""
        clip_features.check_batch(images, prompts)
        vision = self.image_processor(images=resize_images(images), return_tensors="pt")
        merge = self.image_processor.merge_size**2
        texts = []
        for prompt, grid in zip(prompts, vision["image_grid_thw"]):
            head, pad, tail = self.text(prompt).partition(self.image_token)  # the template's one image slot
            texts.append(head + pad * (int(grid.prod()) // merge) + tail)
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        return {
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": vision["image_grid_thw"],
        }

    def mixed_size_inputs(self, images: list[np.ndarray], prompts: list[str]) -> dict[str, "torch.Tensor"]:
        """inputs() of N images of different sizes (each uint8 (H_i, W_i, 3)) in one batch, as the original's
        prepare_batch makes it for a list of image files (inputs() takes one image size per call): each
        item's inputs made on its own, then joined as Qwen2VLProcessor joins a batch: input_ids right-padded
        with the pad token, attention_mask with 0, the patch rows and grids concatenated."""
        import torch

        parts = [self.inputs(img[None], [prompt]) for img, prompt in zip(images, prompts)]
        length = max(part["input_ids"].shape[1] for part in parts)

        def right_padded(key: str, value: int) -> "torch.Tensor":  # (N, L)
            return torch.cat(
                [torch.nn.functional.pad(part[key], (0, length - part[key].shape[1]), value=value) for part in parts]
            )

        return {
            "input_ids": right_padded("input_ids", self.tokenizer.pad_token_id),
            "attention_mask": right_padded("attention_mask", 0),
            "pixel_values": torch.cat([part["pixel_values"] for part in parts]),  # (P, 1176)
            "image_grid_thw": torch.cat([part["image_grid_thw"] for part in parts]),  # (N, 3)
        }

    def features(self, images: np.ndarray, prompts: list[str]) -> "torch.Tensor":
        """(N, D) float32: the last decoder layer's output at each item's <|Reward|> token."""
        return self.features_of(self.inputs(images, prompts), prompts)

    def features_of(self, inputs: dict[str, "torch.Tensor"], prompts: list[str]) -> "torch.Tensor":
        """features() of what inputs() or mixed_size_inputs() made for `prompts`."""
        import torch

        from rewards.hpsv3_model import decoder_hidden_states

        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        ids = inputs["input_ids"]
        image_tokens = (inputs["image_grid_thw"].prod(-1) // self.image_processor.merge_size**2).tolist()
        for i, prompt in enumerate(prompts):  # a prompt holding these tokens' text would shift or break the reading
            if (
                int((ids[i] == self.reward_token_id).sum()) != 1
                or int((ids[i] == self.model.image_token_id).sum()) != image_tokens[i]
            ):
                raise ValueError(
                    f"hpsv3: prompt {i} ({prompt!r}) contains the text of a special token "
                    f"({REWARD_TOKEN} or <|image_pad|>); remove it"
                )
        with torch.inference_mode():
            hidden = decoder_hidden_states(self.model, **inputs)  # (N, L, D)
        rows, cols = (ids == self.reward_token_id).nonzero(as_tuple=True)  # one per row, in row order
        return hidden[rows, cols].float()

    def logits(self, images: np.ndarray, prompts: list[str]) -> "torch.Tensor":
        """(N, 2) float32: HPSv3's (mu, sigma)."""
        import torch

        feats = self.features(images, prompts)
        with torch.inference_mode():
            return self.model.head(feats)

    def __call__(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        return self.logits(images, prompts)[:, 0].double().cpu().numpy()


def checkpoint_path(checkpoint: str | None) -> str:
    """A local checkpoint file, or HPSv3.safetensors from the hub (cached by huggingface_hub)."""
    return checkpoint_file(checkpoint, "HPSv3", "hpsv3", HUB_REPO, CHECKPOINT_FILE, "--model PATH")


def _load_base(base: str) -> tuple[Any, Any, str, Any]:
    """Tokenizer, image processor, chat template and Qwen2VLConfig of the base; one-line errors."""
    from rewards.hpsv3_model import base_config

    source = clip_features.checked_source(base)
    try:
        tokenizer = load_tokenizer(source)
        return (
            tokenizer,
            load_image_processor(source),
            load_chat_template(source, tokenizer),
            base_config(source, len(tokenizer)),
        )
    except OSError as err:  # not cached offline, no network, not a model directory
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"the 'hpsv3' reward needs the config and processor files (not the weights) of its Qwen2-VL base '{base}' "
            f"and could not load them: {first}; download them (e.g. from {DEFAULT_BASE}) and pass base=DIR"
        ) from None


@register_reward(
    "hpsv3",
    needs=f"transformers; `checkpoint` ({CHECKPOINT_FILE} from the hub repo {HUB_REPO}, ~16 GB, downloaded if not "
    f"given), `base` (config and processor files of {DEFAULT_BASE}, no weights; default that hub id), `dtype` (default "
    "bfloat16)",
)
def hpsv3(
    device: str = "cpu", checkpoint: str | None = None, base: str = DEFAULT_BASE, dtype: str = "bfloat16"
) -> RewardFn:
    """Options: checkpoint = HPSv3.safetensors (default: download), base = hub id or local dir of the
    Qwen2-VL base's config, tokenizer, image processor and chat template, dtype of the backbone (the
    head stays float32, as HPSv3 runs it)."""
    from rewards.hpsv3_model import load_hpsv3_model

    torch_dtype = clip_features.torch_dtype(dtype)
    path = checkpoint_path(checkpoint)  # first: without it nothing else is worth loading
    tokenizer, image_processor, chat_template, config = _load_base(base)
    model = load_hpsv3_model(path, config, device, torch_dtype)
    return HPSv3Scorer(model, tokenizer, image_processor, chat_template)

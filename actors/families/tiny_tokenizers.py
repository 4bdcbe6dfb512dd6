"""Stand-ins for the tokenizers of the tiny family builds (actors.families.tiny) that cannot be downloaded
offline: T5's sentencepiece model, Qwen's byte-level BPE, Gemma's. Each keeps what the pipeline relies on
(special-token ids, the chat template, the length of SANA-Sprint's prefixed instruction) at a tiny vocabulary.
The CLIP stand-in, shared with the tiny SD pipeline, is actors.tiny_model.char_clip_tokenizer.
"""

from __future__ import annotations


def t5_char_tokenizer():
    """A character-level T5 vocabulary (the pad, end and unknown tokens first, as T5 numbers them):
    T5's own sentencepiece model cannot be downloaded offline."""
    from transformers import T5TokenizerFast

    t5_vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)] + [
        (chr(c), -1.0) for c in range(33, 127)
    ]
    return T5TokenizerFast(vocab=t5_vocab, extra_ids=0)


# a Qwen3-style chat template for what Flux2KleinPipeline renders: one user turn, the generation prompt, thinking off
_QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)


def qwen_tokenizer():
    """A byte-level Qwen2 tokenizer without merges (each of the 256 byte symbols one token), Qwen's
    special tokens and the chat template above: Qwen's own tokenizer cannot be downloaded offline."""
    from tokenizers import AddedToken
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2TokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    vocab |= {t: len(vocab) + i for i, t in enumerate(specials)}
    tokenizer = Qwen2TokenizerFast(vocab=vocab, merges=[], chat_template=_QWEN3_CHAT_TEMPLATE, model_max_length=512)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials[1:]])  # one token each
    return tokenizer


def instruction_tokenizer():
    """A WordPiece tokenizer (the tokenizers library's) in place of Gemma's, which cannot be downloaded
    offline: <bos> first as Gemma's; every word of SanaSprintPipeline's default complex human
    instruction one token (so the prefixed instruction stays about 200 tokens, as with Gemma's), any
    other word spelled in characters."""
    import inspect

    from diffusers import SanaSprintPipeline
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    instruction = "\n".join(
        inspect.signature(SanaSprintPipeline.__call__).parameters["complex_human_instruction"].default
    )
    split = pre_tokenizers.BertPreTokenizer()  # on whitespace and punctuation
    chars = [chr(c) for c in range(33, 127)]
    words = sorted({w for w, _ in split.pre_tokenize_str(instruction)} - set(chars))
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids 0-3
    vocab = {t: i for i, t in enumerate(specials + chars + ["##" + c for c in chars] + words)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = split
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )

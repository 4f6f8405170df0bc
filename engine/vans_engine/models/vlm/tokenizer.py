"""A byte-level BPE tokenizer trained on our captions and instructions, with Qwen's chat tokens.

Byte-level BPE encodes any text (unknown words fall back to bytes), so the tokenizer never fails on
an operator's instruction; training it on the simulator's captions and instructions makes those
short. The special tokens are Qwen2.5-VL's, so prompts are laid out as Qwen's chat template lays
them out.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
VIDEO_PAD, IMAGE_PAD = "<|video_pad|>", "<|image_pad|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END, VISION_START, VISION_END, VIDEO_PAD, IMAGE_PAD]


def train_caption_tokenizer(corpus: Iterable[str], vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """Train the tokenizer on ``corpus`` (captions and instructions).

    Args:
        corpus (`Iterable[str]`): training texts.
        vocab_size (`int`, defaults to 600): target vocabulary, special tokens and 256 bytes included.

    Returns:
        `PreTrainedTokenizerFast`: saves as ``tokenizer.json`` with ``save_pretrained``.
    """
    texts = [t for t in corpus if t and t.strip()]
    if not texts:
        raise ValueError("the tokenizer corpus is empty")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=IM_END,
                                   additional_special_tokens=SPECIAL_TOKENS[1:])

"""Sizes of the next-event VLM: a Qwen2.5-VL (transformers' own classes) small enough to train on a CPU.

The same classes load a full-size Qwen2.5-VL checkpoint; only these sizes and our tokenizer differ.
With the defaults, a 64x64 clip of 4 frames becomes 2 x 8 x 8 = 128 vision patches of 8x8 pixels,
merged 2x2 into 32 language tokens.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig

from vans_engine.models.vlm.tokenizer import IM_END, IMAGE_PAD, PAD, VIDEO_PAD, VISION_END, VISION_START


def vlm_config(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 256,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 512,
    vision_hidden_size: int = 128,
    vision_depth: int = 2,
    vision_heads: int = 4,
    patch_size: int = 8,
    temporal_patch_size: int = 2,
    spatial_merge_size: int = 2,
    max_position_embeddings: int = 512,
    reads_state: bool = False,
) -> Qwen2_5_VLConfig:
    """A `Qwen2_5_VLConfig` for our size and tokenizer.

    Args:
        tokenizer (`PreTrainedTokenizerFast`): from :func:`train_caption_tokenizer`; gives the vocabulary
            size and the ids of the vision and chat tokens.
        hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size:
            the language model's sizes.
        vision_hidden_size, vision_depth, vision_heads: the vision tower's sizes.
        patch_size (`int`, defaults to 8): vision patch side in pixels.
        temporal_patch_size (`int`, defaults to 2): frames per vision patch.
        spatial_merge_size (`int`, defaults to 2): patches merged per side into one language token.
        max_position_embeddings (`int`, defaults to 512): longest prompt plus caption.
        reads_state (`bool`, defaults to `False`): the prompt also states the robot's proprioception
            (tool point and gripper opening) as text after the instruction; kept in ``config.json``.
    """
    head_dim = hidden_size // num_attention_heads
    if head_dim * num_attention_heads != hidden_size or head_dim % 2:
        raise ValueError(f"hidden_size {hidden_size} must split into {num_attention_heads} heads of even size")
    # Multimodal RoPE splits each head's rotary half into time, height and width sections.
    half = head_dim // 2
    mrope_section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in (PAD, IM_END, VIDEO_PAD, IMAGE_PAD,
                                                                    VISION_START, VISION_END)}
    text_config = {
        "vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers, "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads, "max_position_embeddings": max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
        "bos_token_id": ids[PAD], "eos_token_id": ids[IM_END], "pad_token_id": ids[PAD],
    }
    vision_config = {
        "depth": vision_depth, "hidden_size": vision_hidden_size, "intermediate_size": 2 * vision_hidden_size,
        "num_heads": vision_heads, "patch_size": patch_size, "temporal_patch_size": temporal_patch_size,
        "spatial_merge_size": spatial_merge_size, "out_hidden_size": hidden_size,
        # One window covers the whole 64x64 frame, and the last block attends fully, as Qwen's do.
        "window_size": 64, "fullatt_block_indexes": [vision_depth - 1], "tokens_per_second": 2,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config,
        image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=True, reads_state=reads_state,
    )

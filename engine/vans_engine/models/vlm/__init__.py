"""Next-event VLM: transformers' Qwen2.5-VL at a trainable size, our caption tokenizer, Qwen-layout video patches."""

from vans_engine.models.vlm.configuration_vlm import vlm_config
from vans_engine.models.vlm.modeling_vlm import NextEventVLM
from vans_engine.models.vlm.tokenizer import SPECIAL_TOKENS, train_caption_tokenizer
from vans_engine.models.vlm.video_patches import video_patches

__all__ = ["NextEventVLM", "SPECIAL_TOKENS", "train_caption_tokenizer", "video_patches", "vlm_config"]

"""The next-event VLM: context frames + instruction -> the caption of what happens next.

A thin wrapper around transformers' ``Qwen2_5_VLForConditionalGeneration`` and our tokenizer. The
prompt follows Qwen's chat layout::

    <|im_start|>user
    <|vision_start|><|video_pad|> x N<|vision_end|>{instruction}<|im_end|>
    <|im_start|>assistant
    {caption}<|im_end|>

Decoding uses the model's KV cache (``generate``). ``generate_captions`` gives the greedy caption or
G sampled ones (for GRPO); ``compute_loss`` is the cross-entropy on the caption tokens (SFT).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLForConditionalGeneration

from vans_engine.models.vlm.configuration_vlm import vlm_config
from vans_engine.models.vlm.tokenizer import IM_END, IM_START, VIDEO_PAD, VISION_END, VISION_START
from vans_engine.models.vlm.video_patches import video_patches

MAX_INSTRUCTION_TOKENS = 48
IGNORE_INDEX = -100
VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video


class NextEventVLM:
    """Args:
        model (`Qwen2_5_VLForConditionalGeneration`): the VLM.
        tokenizer (`PreTrainedTokenizerFast`): its tokenizer (see :func:`train_caption_tokenizer`).
    """

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration, tokenizer: PreTrainedTokenizerFast):
        self.model = model
        self.tokenizer = tokenizer
        vision = model.config.vision_config
        self.patch_size, self.temporal_patch_size = vision.patch_size, vision.temporal_patch_size
        self.merge_size = vision.spatial_merge_size
        self.video_token_id = model.config.video_token_id
        self.eos_token_id = tokenizer.convert_tokens_to_ids(IM_END)

    # -- construction and checkpoints ----------------------------------------------------------------

    @classmethod
    def from_config(cls, tokenizer: PreTrainedTokenizerFast, **sizes) -> "NextEventVLM":
        """A randomly initialised VLM; ``sizes`` go to :func:`vlm_config`."""
        return cls(Qwen2_5_VLForConditionalGeneration(vlm_config(tokenizer, **sizes)).eval(), tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "NextEventVLM":
        path = Path(path)
        if not (path / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{path / 'tokenizer.json'}: missing")
        tokenizer = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        if model.config.text_config.vocab_size < len(tokenizer):
            raise ValueError(f"{path / 'config.json'}: vocab_size {model.config.text_config.vocab_size} is smaller "
                             f"than the tokenizer's {len(tokenizer)}")
        return cls(model.eval(), tokenizer)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def to(self, device: str | torch.device) -> "NextEventVLM":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- inputs -------------------------------------------------------------------------------------

    def check_frames(self, frames: np.ndarray) -> np.ndarray:
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be a (T, H, W, 3) array, got {getattr(frames, 'shape', type(frames))}")
        if frames.dtype != np.uint8:
            if not np.issubdtype(frames.dtype, np.floating) or not np.isfinite(frames).all():
                raise ValueError(f"frames must be uint8 or finite floats in [0, 255], got dtype {frames.dtype}"
                                 + ("" if not np.issubdtype(frames.dtype, np.floating) else " with NaN or inf"))
            frames = np.clip(frames, 0, 255).astype(np.uint8)
        return frames

    def instruction_ids(self, instruction: str) -> list[int]:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        ids = self.tokenizer(instruction.strip(), add_special_tokens=False)["input_ids"]
        if len(ids) > MAX_INSTRUCTION_TOKENS:
            warnings.warn(f"instruction of {len(ids)} tokens truncated to {MAX_INSTRUCTION_TOKENS}")
            ids = ids[:MAX_INSTRUCTION_TOKENS]
        return ids

    def _prompt_ids(self, num_video_tokens: int, instruction: str) -> list[int]:
        t = self.tokenizer
        head = t(f"{IM_START}user\n{VISION_START}", add_special_tokens=False)["input_ids"]
        tail = t(f"{VISION_END}", add_special_tokens=False)["input_ids"]
        end = t(f"{IM_END}\n{IM_START}assistant\n", add_special_tokens=False)["input_ids"]
        return head + [self.video_token_id] * num_video_tokens + tail + self.instruction_ids(instruction) + end

    def build_inputs(self, clips: list[np.ndarray], instructions: list[str],
                     captions: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Tokenised, left-padded model inputs for a batch; with ``captions``, also ``labels``.

        Args:
            clips (`list[np.ndarray]`): (T, H, W, 3) uint8 context clips.
            instructions (`list[str]`): one per clip.
            captions (`list[str]`, *optional*): target captions (training); only their tokens and the
                closing ``<|im_end|>`` are scored.
        """
        if len(clips) != len(instructions) or (captions is not None and len(captions) != len(clips)):
            raise ValueError("clips, instructions and captions must have the same length")
        pixel_values, grids, sequences, labels = [], [], [], []
        for k, (clip, instruction) in enumerate(zip(clips, instructions)):
            patches, grid = video_patches(self.check_frames(clip), self.patch_size, self.temporal_patch_size,
                                          self.merge_size)
            pixel_values.append(patches)
            grids.append(grid)
            prompt = self._prompt_ids(len(patches) // self.merge_size**2, instruction)
            target = [] if captions is None else self.tokenizer(captions[k], add_special_tokens=False)["input_ids"] + [self.eos_token_id]
            sequences.append(prompt + target)
            labels.append([IGNORE_INDEX] * len(prompt) + target)
        length = max(map(len, sequences))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (length - len(s)) + s for s in sequences])
        attention_mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in sequences])
        inputs = {
            "input_ids": input_ids, "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.video_token_id).int() * VIDEO_TOKEN_TYPE,
            "pixel_values_videos": torch.from_numpy(np.concatenate(pixel_values)),
            "video_grid_thw": torch.from_numpy(np.concatenate(grids)),
        }
        if captions is not None:
            inputs["labels"] = torch.tensor([[IGNORE_INDEX] * (length - len(x)) + x for x in labels])
        return {k: v.to(self.device) for k, v in inputs.items()}

    # -- inference and training ---------------------------------------------------------------------

    @torch.no_grad()
    def generate_captions(self, frames: np.ndarray, instruction: str, num_samples: int = 1, do_sample: bool = False,
                          max_new_tokens: int = 20, seed: int | None = None, temperature: float = 1.0) -> list[str]:
        """The caption of the next event: greedy, or ``num_samples`` sampled ones.

        Args:
            frames (`np.ndarray`): (T, H, W, 3) uint8 context, oldest first.
            instruction (`str`): what should happen; over-long ones are truncated with a warning.
            num_samples (`int`, defaults to 1): captions to return; more than one needs ``do_sample``.
            do_sample (`bool`, defaults to False): sample instead of greedy decoding.
            max_new_tokens (`int`, defaults to 20): longest caption.
            seed (`int`, *optional*): makes sampling reproducible.
            temperature (`float`, defaults to 1.0): sampling temperature.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if num_samples > 1 and not do_sample:
            raise ValueError("num_samples > 1 needs do_sample=True: greedy decoding gives one caption")
        inputs = self.build_inputs([frames], [instruction])
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                      temperature=temperature if do_sample else None, top_k=None, top_p=None,
                                      num_return_sequences=num_samples, eos_token_id=self.eos_token_id,
                                      pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    def compute_loss(self, clips: list[np.ndarray], instructions: list[str],
                     captions: list[str]) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the caption tokens given frames and instruction (teacher forcing)."""
        out = self.model(**self.build_inputs(clips, instructions, captions))
        return out.loss, {"loss": out.loss.item()}

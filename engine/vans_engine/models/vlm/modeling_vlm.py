"""The next-event VLM: context frames + instruction -> the caption of what happens next.

A thin wrapper around transformers' ``Qwen2_5_VLForConditionalGeneration`` and our tokenizer, so the
same code loads a full-size Qwen2.5-VL checkpoint. The prompt follows Qwen's chat layout::

    <|im_start|>user
    <|vision_start|><|video_pad|> x N<|vision_end|>{instruction}[
    {state}]<|im_end|>
    <|im_start|>assistant
    {caption}<|im_end|>

with N = grid_t * grid_h * grid_w / merge_size**2 (one token per merged 2x2 block of patches). A VLM
whose config ``reads_state`` also gets the robot's proprioception as a line of text (:func:`state_text`):
in the pick tasks whether the gripper is open and how high it is tell the reach, grasp, lift and carry
apart, which a 64-pixel view barely shows.
``generate_captions`` gives the greedy caption or G sampled ones (GRPO); ``loss`` / ``compute_loss``
are the cross-entropy on the caption tokens only (SFT).

>>> vlm = NextEventVLM.from_config(train_caption_tokenizer(corpus))
>>> vlm.generate_captions(frames, "push the red button")  # frames: (T, 64, 64, 3) uint8
['the gripper presses the red button']
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLForConditionalGeneration, StaticCache

from vans_engine.backends import CudaGraphCallable

from vans_engine.models.vlm.configuration_vlm import vlm_config
from vans_engine.models.vlm.tokenizer import IM_END, IM_START, VISION_END, VISION_START
from vans_engine.models.vlm.video_patches import video_patches

MAX_INSTRUCTION_TOKENS = 48  # the simulator's longest instruction is ~12 tokens
IGNORE_INDEX = -100  # label of prompt tokens: cross-entropy ignores them
VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video; Qwen's rope index reads them
GRAPHED = "graphed"  # cache_implementation of our own greedy decoder (see GraphedGreedyDecoder)
STATE_DIM = 4  # tool point x, y, z (m) and gripper opening (0-1), as vans_sim observes them


def state_text(state: np.ndarray) -> str:
    """The prompt's line for one ``(4,)`` proprioception vector, to the centimetre.

    Text rather than a learned embedding: Qwen2.5-VL's own classes read it unchanged, and so would a
    full-size checkpoint.
    """
    x, y, z, gripper = (float(v) + 0.0 for v in np.round(state, 2))  # + 0.0: no "-0.00"
    return f"tool at x {x:.2f} y {y:.2f} z {z:.2f}, gripper {gripper:.2f}"


def checked_states(states: np.ndarray | None, batch: int, dim: int, reader: str) -> np.ndarray:
    """``states`` as a ``(batch, dim)`` float32 array of finite values, or a `ValueError` saying what is
    wrong; ``reader`` names what needs them ("this VLM")."""
    if states is None:
        raise ValueError(f"{reader} reads proprioception: pass states of shape ({batch}, {dim}) "
                         f"(tool point x, y, z and gripper opening)")
    states = np.asarray(states, dtype=np.float32)
    if states.shape != (batch, dim):
        raise ValueError(f"states must have shape ({batch}, {dim}), got {states.shape}")
    if not np.isfinite(states).all():
        raise ValueError("states contain NaN or infinite values")
    return states


class GraphedGreedyDecoder:
    """Greedy caption decoding with a static KV cache, each decoding step replayed as a CUDA graph.

    A 16-token caption from a small model costs more in kernel launches than in arithmetic; with the
    KV cache at fixed addresses, one decoding step has fixed shapes and can be captured once and
    replayed. The prompt (with the video) is prefilled eagerly into the same cache. Text tokens after
    the prompt take multimodal-RoPE position ``cache_position + offset``, the offset being Qwen's rope
    delta less the row's left padding, as ``generate`` computes it. On a CPU the same loop runs
    without graphs. One decoder serves one (batch, prompt length, caption length) shape.
    """

    def __init__(self, vlm: "NextEventVLM", batch: int, prompt_length: int, max_new_tokens: int):
        self.vlm, self.model = vlm, vlm.model
        self.prompt_length, self.max_new_tokens = prompt_length, max_new_tokens
        self.cache = StaticCache(config=self.model.config, max_cache_len=prompt_length + max_new_tokens)
        self.graphed = vlm.device.type == "cuda"
        self.step = CudaGraphCallable(self._step) if self.graphed else self._step
        self.captured = False

    def _prefill(self, inputs: dict[str, torch.Tensor]):
        self.cache.reset()
        length = inputs["input_ids"].shape[1]
        return self.model(**inputs, past_key_values=self.cache, use_cache=True,
                          cache_position=torch.arange(length, device=self.vlm.device))

    def _step(self, token, cache_position, offset, attention_mask):
        batch = token.shape[0]
        position_ids = (cache_position.view(1, 1, 1) + offset.view(1, batch, 1)).expand(3, batch, 1)
        return self.model(input_ids=token[:, None], position_ids=position_ids, attention_mask=attention_mask,
                          past_key_values=self.cache, cache_position=cache_position, use_cache=True).logits[:, -1]

    @torch.no_grad()
    def __call__(self, inputs: dict[str, torch.Tensor], min_new_tokens: int = 0) -> torch.Tensor:
        """Greedy tokens ``(B, max_new_tokens)``, padded with the end token after it appears."""
        device, (batch, length) = self.vlm.device, inputs["input_ids"].shape
        out = self._prefill(inputs)
        prompt_mask = inputs["attention_mask"]
        attention_mask = torch.cat([prompt_mask, prompt_mask.new_ones(batch, self.max_new_tokens)], dim=1)
        offset = self.model.model.rope_deltas.view(batch) - (length - prompt_mask.sum(1))
        if self.graphed and not self.captured:
            # The static cache writes where its own on-device counter points, and capturing runs the
            # step several times (warm-up), each advancing that counter: capture once, then prefill
            # again from a clean cache.
            self.step(token=out.logits[:, -1].argmax(-1), cache_position=torch.tensor([length], device=device),
                      offset=offset, attention_mask=attention_mask)
            self.captured = True
            out = self._prefill(inputs)
        logits, eos = out.logits[:, -1], self.vlm.eos_token_id
        tokens, done = [], torch.zeros(batch, dtype=torch.bool, device=device)
        for i in range(self.max_new_tokens):
            if i < min_new_tokens:
                logits[:, eos] = -float("inf")
            token = torch.where(done, torch.full_like(done, eos, dtype=torch.long), logits.argmax(-1))
            tokens.append(token)
            done |= token == eos
            if i == self.max_new_tokens - 1 or bool(done.all()):
                break
            logits = self.step(token=token, cache_position=torch.tensor([length + i], device=device),
                               offset=offset, attention_mask=attention_mask).clone()
        tokens += [torch.full_like(tokens[0], eos)] * (self.max_new_tokens - len(tokens))
        return torch.stack(tokens, dim=1)


class NextEventVLM:
    """Qwen2.5-VL + tokenizer, with our prompt layout and input checks.

    Args:
        model (`Qwen2_5_VLForConditionalGeneration`): the VLM.
        tokenizer (`PreTrainedTokenizerFast`): its tokenizer (see :func:`train_caption_tokenizer`).
        use_processor (`bool`, *optional*, defaults to `False`): build video patches with transformers'
            ``Qwen2VLVideoProcessor`` (needs torchvision) instead of our numpy copy of its layout.
    """

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration, tokenizer: PreTrainedTokenizerFast,
                 use_processor: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.use_processor = use_processor
        vision = model.config.vision_config
        self.patch_size, self.temporal_patch_size = vision.patch_size, vision.temporal_patch_size
        self.merge_size = vision.spatial_merge_size
        self.video_token_id = model.config.video_token_id
        self.eos_token_id = tokenizer.convert_tokens_to_ids(IM_END)
        self.reads_state = bool(getattr(model.config, "reads_state", False))
        # The fixed parts of the prompt, tokenised once.
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        self._head = encode(f"{IM_START}user\n{VISION_START}")
        self._after_video = encode(VISION_END)
        self._tail = encode(f"{IM_END}\n{IM_START}assistant\n")

    # -- construction and checkpoints ----------------------------------------------------------------

    @classmethod
    def from_config(cls, tokenizer: PreTrainedTokenizerFast, **sizes) -> "NextEventVLM":
        """A randomly initialised VLM.

        Args:
            tokenizer (`PreTrainedTokenizerFast`): from :func:`train_caption_tokenizer`.
            **sizes: forwarded to :func:`vlm_config` (``hidden_size``, ``patch_size``, ...).
        """
        return cls(Qwen2_5_VLForConditionalGeneration(vlm_config(tokenizer, **sizes)).eval(), tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path, use_processor: bool = False) -> "NextEventVLM":
        """Load ``config.json`` + ``model.safetensors`` + ``tokenizer.json`` from ``path``.

        Args:
            path (`str` or `Path`): a folder written by :meth:`save_pretrained`, or a Qwen2.5-VL checkpoint.
            use_processor (`bool`, *optional*, defaults to `False`): see the class docstring.
        """
        path = Path(path)
        for name in ("config.json", "tokenizer.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name}: missing")
        tokenizer = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        if model.config.text_config.vocab_size < len(tokenizer):
            raise ValueError(f"{path / 'config.json'}: vocab_size {model.config.text_config.vocab_size} is smaller "
                             f"than the tokenizer's {len(tokenizer)}")
        return cls(model.eval(), tokenizer, use_processor=use_processor)

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json``, ``generation_config.json``, ``model.safetensors`` and the tokenizer files."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def to(self, device: str | torch.device) -> "NextEventVLM":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- inputs -------------------------------------------------------------------------------------

    def check_frames(self, frames: np.ndarray) -> None:
        """Raise `ValueError` naming what is wrong with a ``(T, H, W, 3)`` uint8 clip."""
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"frames must have shape (T, H, W, 3) with T >= 1, got shape {frames.shape}")
        if np.issubdtype(frames.dtype, np.floating) and not np.isfinite(frames).all():
            raise ValueError("frames contain NaN or inf values")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must have dtype uint8 (0..255), got dtype {frames.dtype}")
        factor = self.patch_size * self.merge_size
        if frames.shape[1] % factor or frames.shape[2] % factor:
            raise ValueError(f"frame size {frames.shape[1]}x{frames.shape[2]} must be a multiple of "
                             f"patch_size * spatial_merge_size = {factor}")

    def instruction_ids(self, instruction: str) -> list[int]:
        """Token ids of ``instruction``; longer than ``MAX_INSTRUCTION_TOKENS`` is truncated with a warning."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        ids = self.tokenizer(instruction.strip(), add_special_tokens=False)["input_ids"]
        if len(ids) > MAX_INSTRUCTION_TOKENS:
            warnings.warn(f"instruction of {len(ids)} tokens truncated to {MAX_INSTRUCTION_TOKENS}: {instruction!r}",
                          stacklevel=3)
            ids = ids[:MAX_INSTRUCTION_TOKENS]
        return ids

    def check_states(self, states: np.ndarray | None, batch: int) -> np.ndarray | None:
        """Validate ``(B, STATE_DIM)`` proprioception; None when this VLM does not read it."""
        return checked_states(states, batch, STATE_DIM, "this VLM") if self.reads_state else None

    def build_inputs(self, clips: list[np.ndarray], instructions: list[str],
                     captions: list[str] | None = None, allow_empty_captions: bool = False,
                     states: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """Tokenised, left-padded model inputs for a batch; with ``captions``, also ``labels``.

        Args:
            clips (`list[np.ndarray]`): (T, H, W, 3) uint8 context clips, oldest frame first.
            instructions (`list[str]`): one per clip.
            captions (`list[str]`, *optional*): target captions (training); only their tokens and the
                closing ``<|im_end|>`` are scored.
            allow_empty_captions (`bool`, *optional*, defaults to `False`): accept empty captions (scored
                as ``<|im_end|>`` alone): a sampled caption may be empty, a training target may not.
            states (`np.ndarray`, *optional*): ``(B, 4)`` proprioception at each clip's last frame;
                required when :attr:`reads_state`, ignored otherwise.

        Returns:
            `dict[str, torch.Tensor]`: ``input_ids``, ``attention_mask``, ``mm_token_type_ids``,
            ``pixel_values_videos``, ``video_grid_thw`` (and ``labels``), on the model's device.
        """
        if len(clips) != len(instructions) or (captions is not None and len(captions) != len(clips)):
            raise ValueError(f"got {len(clips)} clips, {len(instructions)} instructions and "
                             f"{'no' if captions is None else len(captions)} captions: the counts must match")
        states = self.check_states(states, len(clips))
        pixel_values, grids, sequences, labels = [], [], [], []
        for k, (clip, instruction) in enumerate(zip(clips, instructions)):
            self.check_frames(clip)
            patches, grid = video_patches(clip, self.patch_size, self.temporal_patch_size, self.merge_size,
                                          use_processor=self.use_processor)
            pixel_values.append(patches)
            grids.append(grid)
            num_video_tokens = len(patches) // self.merge_size**2
            prompt = self._head + [self.video_token_id] * num_video_tokens + self._after_video
            prompt += self.instruction_ids(instruction)
            if states is not None:
                prompt += self.tokenizer("\n" + state_text(states[k]), add_special_tokens=False)["input_ids"]
            prompt += self._tail
            target = []
            if captions is not None:
                if not isinstance(captions[k], str) or not (captions[k].strip() or allow_empty_captions):
                    raise ValueError(f"target caption must be a non-empty string, got {captions[k]!r}")
                target = self.tokenizer(captions[k].strip(), add_special_tokens=False)["input_ids"]
                target = target + [self.eos_token_id]
            sequences.append(prompt + target)
            labels.append([IGNORE_INDEX] * len(prompt) + target)
        # Left padding, so that generation continues every row from its last prompt token.
        length = max(map(len, sequences))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (length - len(s)) + s for s in sequences])
        attention_mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in sequences])
        inputs = {
            "input_ids": input_ids, "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.video_token_id).int() * VIDEO_TOKEN_TYPE,
            "pixel_values_videos": torch.from_numpy(np.concatenate(pixel_values)),
            "video_grid_thw": torch.from_numpy(np.concatenate(grids)),
            # One unit of multimodal-RoPE time per temporal patch, stated explicitly: transformers'
            # fallback for a missing value runs out when a batch holds more clips than prompt tokens.
            "second_per_grid_ts": torch.ones(len(grids)),
        }
        if captions is not None:
            inputs["labels"] = torch.tensor([[IGNORE_INDEX] * (length - len(x)) + x for x in labels])
        return {k: v.to(self.device) for k, v in inputs.items()}

    # -- inference and training ---------------------------------------------------------------------

    def generate_captions(self, frames: np.ndarray, instruction: str, num_samples: int = 1, do_sample: bool = False,
                          max_new_tokens: int = 20, seed: int | None = None, temperature: float = 1.0,
                          min_new_tokens: int = 0, cache_implementation: str | None = None,
                          state: np.ndarray | None = None) -> list[str]:
        """The caption of the next event: greedy, or ``num_samples`` sampled ones.

        Args:
            frames (`np.ndarray`): (T, H, W, 3) uint8 context, oldest first.
            instruction (`str`): what should happen; over-long ones are truncated with a warning.
            num_samples (`int`, *optional*, defaults to 1): captions to return; more than one needs ``do_sample``.
            do_sample (`bool`, *optional*, defaults to `False`): sample instead of greedy decoding.
            max_new_tokens (`int`, *optional*, defaults to 20): longest caption, in tokens.
            seed (`int`, *optional*): makes sampling reproducible without touching the global RNG.
            temperature (`float`, *optional*, defaults to 1.0): sampling temperature.
            min_new_tokens (`int`, *optional*, defaults to 0): suppress ``<|im_end|>`` before this many
                tokens (benchmarks time captions of a fixed length).
            cache_implementation (`str`, *optional*): transformers' KV cache kind, e.g. ``"static"``,
                or ``"graphed"`` for greedy decoding by :class:`GraphedGreedyDecoder`.
            state (`np.ndarray`, *optional*): ``(4,)`` proprioception at the newest frame; required when
                :attr:`reads_state`.

        Returns:
            `list[str]`: ``num_samples`` captions.
        """
        return self.generate_captions_batch(
            [frames], [instruction], num_samples=num_samples, do_sample=do_sample, max_new_tokens=max_new_tokens,
            seed=seed, temperature=temperature, min_new_tokens=min_new_tokens,
            cache_implementation=cache_implementation, states=None if state is None else np.asarray(state)[None])[0]

    @torch.no_grad()
    def generate_captions_batch(self, clips: list[np.ndarray], instructions: list[str], num_samples: int = 1,
                                do_sample: bool = False, max_new_tokens: int = 20, seed: int | None = None,
                                temperature: float = 1.0, min_new_tokens: int = 0,
                                cache_implementation: str | None = None,
                                states: np.ndarray | None = None) -> list[list[str]]:
        """:meth:`generate_captions` for several clips in one ``generate`` call (left-padded prompts);
        ``states`` is ``(B, 4)``, one per clip.

        Returns:
            `list[list[str]]`: ``num_samples`` captions per clip.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if num_samples > 1 and not do_sample:
            raise ValueError(f"num_samples={num_samples} needs do_sample=True: greedy decoding gives one caption")
        if not 0 <= min_new_tokens <= max_new_tokens or max_new_tokens < 1:
            raise ValueError(f"need 0 <= min_new_tokens <= max_new_tokens and max_new_tokens >= 1, got "
                             f"min_new_tokens={min_new_tokens}, max_new_tokens={max_new_tokens}")
        if do_sample and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        inputs = self.build_inputs(clips, instructions, states=states)
        if cache_implementation == GRAPHED:
            if do_sample:
                raise ValueError("the graphed decoder is greedy: use another cache_implementation to sample")
            return self._decode(self._graphed_decoder(inputs, max_new_tokens)(inputs, min_new_tokens), len(clips), 1)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample,
                temperature=temperature if do_sample else None, top_k=None, top_p=None,
                num_return_sequences=num_samples, eos_token_id=self.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id, cache_implementation=cache_implementation)
        return self._decode(out[:, inputs["input_ids"].shape[1]:], len(clips), num_samples)

    def _decode(self, tokens: torch.Tensor, num_clips: int, num_samples: int) -> list[list[str]]:
        texts = [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in tokens]
        return [texts[i * num_samples:(i + 1) * num_samples] for i in range(num_clips)]

    def _graphed_decoder(self, inputs: dict[str, torch.Tensor], max_new_tokens: int) -> GraphedGreedyDecoder:
        key = (*inputs["input_ids"].shape, max_new_tokens)
        decoders = self.__dict__.setdefault("_graphed_decoders", {})
        if key not in decoders:
            if len(decoders) >= 8:  # each holds a KV cache (and a CUDA graph): keep the recent shapes
                decoders.pop(next(iter(decoders)))
            decoders[key] = GraphedGreedyDecoder(self, key[0], key[1], max_new_tokens)
        return decoders[key]

    def compute_loss(self, clips: list[np.ndarray], instructions: list[str], captions: list[str],
                     states: np.ndarray | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the caption tokens given frames and instruction (teacher forcing), for a batch.

        Args:
            clips (`list[np.ndarray]`): (T, H, W, 3) uint8 context clips.
            instructions (`list[str]`): one per clip.
            captions (`list[str]`): the next event's caption, one per clip.
            states (`np.ndarray`, *optional*): ``(B, 4)`` proprioception, when :attr:`reads_state`.

        Returns:
            `tuple[torch.Tensor, dict[str, float]]`: the mean loss over caption tokens, and logs.
        """
        out = self.model(**self.build_inputs(clips, instructions, captions, states=states))
        return out.loss, {"loss": out.loss.item()}

    def loss(self, frames: np.ndarray, instruction: str, target_caption: str,
             state: np.ndarray | None = None) -> torch.Tensor:
        """:meth:`compute_loss` for one sample."""
        states = None if state is None else np.asarray(state)[None]
        return self.compute_loss([frames], [instruction], [target_caption], states=states)[0]

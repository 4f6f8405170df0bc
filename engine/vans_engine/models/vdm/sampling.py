"""Flow-matching sampling and training targets for the VDM.

Conventions (shared with training and distillation):

* frames are channels-first, ``(B, N, 3, H, W)`` as everywhere in the engine, float in ``[-1, 1]``
  (``uint8`` is accepted at the sampler's input); the transformer wants ``(B, C, N, H, W)``;
* flow matching as in diffusers' `FlowMatchEulerDiscreteScheduler`: ``x_t = (1 - s) x_0 + s noise`` with
  ``s = t / num_train_timesteps`` and the transformer predicts the velocity ``noise - x_0``;
* the model input is ``[noisy K frames | context frames zero-padded to K | context mask]`` on channels
  (:func:`pack_model_input`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from diffusers.utils import BaseOutput

from vans_engine.models.vdm.configuration_vdm import IMAGE_SIZE, NUM_FRAMES, RGB_CHANNELS


def frame_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of frames given as a square's side or as that pair (views side by side are
    ``(S, S * views)``)."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = (int(v) for v in image_size)
    return height, width


def check_context_frames(frames: torch.Tensor, image_size: int | tuple[int, int] | None = None,
                         num_frames: int = NUM_FRAMES) -> None:
    """Raise `ValueError` naming the problem if `frames` is not a usable ``(B, T, 3, H, W)`` context.

    Args:
        frames (`torch.Tensor`): uint8, or float in ``[-1, 1]``.
        image_size (`int` or `(int, int)`, *optional*): required side of square frames, or their
            ``(height, width)``.
        num_frames (`int`, defaults to `8`): K; the context may not be longer (it is laid on the K slots).
    """
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"context frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.ndim != 5 or frames.shape[2] != RGB_CHANNELS:
        raise ValueError(f"context frames must have shape (B, T, 3, H, W), got {tuple(frames.shape)}")
    if image_size is not None and tuple(frames.shape[-2:]) != frame_size(image_size):
        height, width = frame_size(image_size)
        raise ValueError(f"context frames must be {height}x{width} (HxW), got {tuple(frames.shape[-2:])}")
    if not 1 <= frames.shape[1] <= num_frames:
        raise ValueError(f"context must hold 1 to {num_frames} frames, got {frames.shape[1]}")
    if frames.dtype == torch.uint8:
        return
    if not frames.is_floating_point():
        raise ValueError(f"context frames must be uint8 or floating point, got {frames.dtype}")
    if not torch.isfinite(frames).all():
        raise ValueError("context frames contain NaN or infinite values")
    lo, hi = frames.min().item(), frames.max().item()
    # A little slack for resampling overshoot; [0, 255] or [0, 1] floats would be far outside.
    if lo < -1.01 or hi > 1.01:
        raise ValueError(f"float context frames must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]``; float frames are clamped to ``[-1, 1]``."""
    if frames.dtype == torch.uint8:
        return frames.float() / 127.5 - 1.0
    return frames.clamp(-1.0, 1.0)


def pack_model_input(noisy: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Build the transformer input from the noisy future frames and the context frames.

    Wan image-to-video concatenates the known frames and a mask to the noisy latents along channels.
    We do the same in pixel space: context frame ``i`` (oldest first) sits in time slot ``i`` of three
    extra channels, slots past the context are zero, and a mask channel marks the filled slots, so the
    same weights accept any context length ``1 <= T <= K``.

    Args:
        noisy (`torch.Tensor`): ``(B, 3, K, H, W)``, the sample being denoised.
        context (`torch.Tensor`): ``(B, T, 3, H, W)`` float in ``[-1, 1]``.

    Returns:
        `torch.Tensor`: ``(B, 7, K, H, W)``.
    """
    batch, _, num_frames, height, width = noisy.shape
    num_context = context.shape[1]
    cond = noisy.new_zeros(batch, RGB_CHANNELS + 1, num_frames, height, width)
    cond[:, :RGB_CHANNELS, :num_context] = context.to(noisy.dtype).transpose(1, 2)
    cond[:, RGB_CHANNELS, :num_context] = 1.0
    return torch.cat([noisy, cond], dim=1)


def sample_training_timesteps(scheduler: FlowMatchEulerDiscreteScheduler, batch_size: int,
                              generator: torch.Generator | None = None, device: torch.device | str = "cpu"
                              ) -> torch.Tensor:
    """Draw training timesteps uniformly from the scheduler's training schedule (its `shift` applied).

    The table is rebuilt from ``scheduler.config`` because `set_timesteps` (sampling) overwrites the
    scheduler's own tables.

    Args:
        scheduler (`FlowMatchEulerDiscreteScheduler`): the VDM's scheduler.
        batch_size (`int`): one timestep per sample.
        generator (`torch.Generator`, *optional*): for reproducible draws (CPU generator).
        device (`torch.device | str`, defaults to `"cpu"`): where the result goes.

    Returns:
        `torch.Tensor`: ``(batch_size,)`` float timesteps in ``(0, num_train_timesteps]``.
    """
    table = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config).timesteps
    index = torch.randint(0, len(table), (batch_size,), generator=generator)
    return table[index].to(device=device, dtype=torch.float32)


def flow_matching_inputs(clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                         num_train_timesteps: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy sample and velocity target for one flow-matching training step.

    Same interpolation as `FlowMatchEulerDiscreteScheduler.scale_noise`, but for any timestep, one per
    sample, without the scheduler's table lookup.

    Args:
        clean (`torch.Tensor`): ``(B, ...)`` target frames ``x_0``.
        noise (`torch.Tensor`): Gaussian noise of the same shape.
        timesteps (`torch.Tensor`): ``(B,)`` timesteps in ``[0, num_train_timesteps]``.
        num_train_timesteps (`int`, defaults to `1000`): ``scheduler.config.num_train_timesteps``.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: ``x_t = (1 - s) x_0 + s noise`` and the target ``noise - x_0``.
    """
    if noise.shape != clean.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} differs from clean shape {tuple(clean.shape)}")
    sigma = (timesteps.to(clean.dtype) / num_train_timesteps).view(-1, *([1] * (clean.ndim - 1)))
    return (1.0 - sigma) * clean + sigma * noise, noise - clean


@dataclass
class VideoDiffusionOutput(BaseOutput):
    """Output of :class:`VideoDiffusionSampler`.

    Args:
        frames (`torch.Tensor`): ``(B * num_videos_per_prompt, K, 3, H, W)`` generated future frames,
            float in ``[-1, 1]`` (``output_type="pt"``) or uint8 (``output_type="uint8"``).
        features (`torch.Tensor`, *optional*): ``(B * num_videos_per_prompt, K * Hp * Wp, C)``, the
            transformer's tokens at step ``feature_step`` when it was asked for.
    """

    frames: torch.Tensor
    features: torch.Tensor | None = None


class VideoDiffusionSampler:
    """Context frames + caption tokens -> K future frames, with a flow-matching Euler scheduler.

    Holds no weights of its own: the transformer and scheduler are passed in, like a diffusers
    pipeline's components. The scheduler's step count is a call argument, so the same sampler runs the
    teacher (20-50 steps) and the distilled student (1-4 steps).

    Args:
        transformer (`WanTransformer3DModel`): the denoiser (see :func:`make_vdm`).
        scheduler (`FlowMatchEulerDiscreteScheduler`): the flow-matching scheduler (see :func:`make_scheduler`).
        num_frames (`int`, defaults to `8`): K, frames generated per sample.
        image_size (`int` or `(int, int)`, defaults to `64`): side of the square frames the transformer
            draws, or their ``(height, width)`` (two camera views side by side: ``(64, 128)``).
    """

    def __init__(self, transformer: WanTransformer3DModel, scheduler: FlowMatchEulerDiscreteScheduler,
                 num_frames: int = NUM_FRAMES, image_size: int | tuple[int, int] = IMAGE_SIZE):
        config = transformer.config
        height, width = frame_size(image_size)
        if num_frames % config.patch_size[0] or height % config.patch_size[1] or width % config.patch_size[2]:
            raise ValueError(f"num_frames {num_frames} and frames of {height}x{width} must be divisible by the "
                             f"transformer's patch size {tuple(config.patch_size)}")
        self.transformer = transformer
        self.scheduler = scheduler
        self.num_frames = num_frames
        self.image_size = image_size

    def check_inputs(self, context_frames: torch.Tensor, caption_tokens: torch.Tensor,
                     num_inference_steps: int, output_type: str) -> None:
        config = self.transformer.config
        check_context_frames(context_frames, self.image_size, self.num_frames)
        if caption_tokens.ndim != 3 or caption_tokens.shape[-1] != config.text_dim:
            raise ValueError(f"caption tokens must have shape (B, L, {config.text_dim}), "
                             f"got {tuple(caption_tokens.shape)}")
        if caption_tokens.shape[0] != context_frames.shape[0]:
            raise ValueError(f"batch mismatch: {context_frames.shape[0]} context clips, "
                             f"{caption_tokens.shape[0]} captions")
        if not torch.isfinite(caption_tokens).all():
            raise ValueError("caption tokens contain NaN or infinite values")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        if output_type not in ("pt", "uint8"):
            raise ValueError(f"output_type must be 'pt' or 'uint8', got {output_type!r}")

    @torch.no_grad()
    def __call__(
        self,
        context_frames: torch.Tensor,
        caption_tokens: torch.Tensor,
        num_inference_steps: int = 4,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        feature_step: int | None = None,
    ) -> VideoDiffusionOutput | tuple[torch.Tensor]:
        """Generate future frames.

        Args:
            context_frames (`torch.Tensor`): ``(B, T, 3, H, W)``, uint8 or float in ``[-1, 1]``, oldest first.
            caption_tokens (`torch.Tensor`): ``(B, L, text_dim)`` from :class:`CaptionEncoder` (padding
                zeroed) or any connector of the same width.
            num_inference_steps (`int`, defaults to `4`): Euler steps.
            num_videos_per_prompt (`int`, defaults to `1`): futures sampled per context (the planner's
                "what if" samples); outputs are grouped by input sample.
            generator (`torch.Generator`, *optional*): makes the initial noise reproducible.
            latents (`torch.Tensor`, *optional*): initial noise ``(B * num_videos_per_prompt, 3, K, H, W)``;
                drawn from `generator` when not given.
            output_type (`str`, defaults to `"pt"`): `"pt"` float in ``[-1, 1]`` or `"uint8"`.
            return_dict (`bool`, defaults to `True`): return a :class:`VideoDiffusionOutput`, else a tuple.
            feature_step (`int`, *optional*): also return the transformer's tokens at this step (0 is the
                first); the transformer must then return them second, as
                :class:`~vans_engine.models.vdm.features.DenoiserWithFeatures` does.

        Returns:
            :class:`VideoDiffusionOutput` or `tuple`: frames ``(B * num_videos_per_prompt, K, 3, H, W)``
            (and the tokens, when ``feature_step`` is given).
        """
        # 1. Check inputs
        self.check_inputs(context_frames, caption_tokens, num_inference_steps, output_type)
        if feature_step is not None and not 0 <= feature_step < num_inference_steps:
            raise ValueError(f"feature_step must be in [0, {num_inference_steps}) for {num_inference_steps} "
                             f"steps, got {feature_step}")
        device, dtype = self.transformer.device, self.transformer.dtype

        # 2. Conditioning, repeated per sampled future
        context = normalize_frames(context_frames).to(device=device, dtype=dtype)
        context = context.repeat_interleave(num_videos_per_prompt, dim=0)
        tokens = caption_tokens.to(device=device, dtype=dtype).repeat_interleave(num_videos_per_prompt, dim=0)
        batch, _, _, height, width = context.shape

        # 3. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)

        # 4. Initial noise; drawn on the CPU so a seed gives the same video on every device
        shape = (batch, RGB_CHANNELS, self.num_frames, height, width)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        else:
            latents = latents.to(device=device, dtype=dtype)

        # 5. Denoise
        features = None
        for step, t in enumerate(self.scheduler.timesteps):
            model_input = pack_model_input(latents, context)
            out = self.transformer(hidden_states=model_input, timestep=t.expand(batch),
                                   encoder_hidden_states=tokens, return_dict=False)
            if step == feature_step:
                features = out[1].float()
            latents = self.scheduler.step(out[0], t, latents, return_dict=False)[0]

        # 6. Back to (B, K, 3, H, W) frames
        frames = latents.float().clamp(-1.0, 1.0).transpose(1, 2)
        if output_type == "uint8":
            frames = ((frames + 1.0) * 127.5).round().to(torch.uint8)
        if not return_dict:
            return (frames,) if features is None else (frames, features)
        return VideoDiffusionOutput(frames=frames, features=features)

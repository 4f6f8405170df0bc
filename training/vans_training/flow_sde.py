"""The flow-matching sampler as an SDE, so that every denoising step has a log-probability (Flow-GRPO).

The deployed sampler integrates the probability-flow ODE ``dx = v(x, s) ds`` from noise (``s = 1``)
to the video (``s = 0``). An ODE step is deterministic: it has no likelihood, and a policy gradient
needs one. Flow-GRPO (Liu et al., 2025) replaces it by the reverse-time SDE with the same marginals,

    dx = [v + a^2 / (2 s) (x + (1 - s) v)] ds + a sqrt(s / (1 - s)) dw,

whose Euler-Maruyama step from ``s`` to ``s' = s + ds`` (``ds < 0``) is Gaussian: the mean below and
the standard deviation ``a sqrt(s / (1 - s)) sqrt(-ds)``. ``a`` is ``noise_level``; with ``a = 0``
the step is the ODE's Euler step, which the tests check against :class:`VideoDiffusionSampler`. At
``s = 1`` the factor ``s / (1 - s)`` is infinite; like Flow-GRPO we evaluate it at the next level.

The last step (to ``s = 0``) is always the deterministic Euler step: noise added there would stay in
the video, and with the few steps a distilled student takes it would be most of the video's noise.
Log-probabilities are the Gaussian log-density averaged over the video's elements (Flow-GRPO's
convention), one number per step and video.

GRPO samples on a uniform schedule of ``steps`` levels, ``1, 1 - 1/n, ..., 0``: the scheduler's own
two-step schedule (``1, 0.001, 0``) leaves no level at which noise could be injected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from vans_engine.models.vdm import pack_model_input


def sde_sigmas(steps: int) -> torch.Tensor:
    """The ``steps + 1`` noise levels ``1 .. 0`` of a GRPO rollout."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1)


def velocity(denoiser, sample: torch.Tensor, sigma: float, context: torch.Tensor,
             tokens: torch.Tensor) -> torch.Tensor:
    """The denoiser's velocity at level ``sigma`` for (B, 3, K, H, W) samples."""
    timestep = torch.full((len(sample),), sigma * 1000.0, device=sample.device)
    return denoiser(hidden_states=pack_model_input(sample, context), timestep=timestep,
                    encoder_hidden_states=tokens, return_dict=False)[0].float()


def sde_step_mean_std(sample: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float,
                      sigma_max: float, noise_level: float) -> tuple[torch.Tensor, float]:
    """Mean and standard deviation of the Gaussian step from ``sigma`` to ``sigma_next``."""
    dt = sigma_next - sigma
    level = sigma_max if sigma >= 1.0 else sigma
    std_dev = noise_level * math.sqrt(level / (1.0 - level))
    mean = (sample * (1.0 + std_dev**2 / (2 * sigma) * dt)
            + velocity * (1.0 + std_dev**2 * (1.0 - sigma) / (2 * sigma)) * dt)
    return mean, std_dev * math.sqrt(-dt)


def gaussian_log_prob(value: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Per-video mean over elements of the Gaussian log-density, (B,)."""
    log_density = -((value - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return log_density.flatten(1).mean(1)


@dataclass
class SDERollout:
    """One batch of sampled videos and what the policy gradient needs of them.

    Attributes:
        samples (`torch.Tensor`): ``(S + 1, B, 3, K, H, W)``, the state before each stochastic step and
            after the last one (``S = steps - 1`` stochastic steps).
        log_probs (`torch.Tensor`): ``(B, S)`` log-probability of each stochastic step when sampled.
        videos (`torch.Tensor`): ``(B, K, 3, H, W)`` in [-1, 1], the finished videos (after the last,
            deterministic step).
    """

    samples: torch.Tensor
    log_probs: torch.Tensor
    videos: torch.Tensor


@torch.no_grad()
def sde_rollout(denoiser, context: torch.Tensor, tokens: torch.Tensor, noise: torch.Tensor, steps: int,
                noise_level: float, generator: torch.Generator) -> SDERollout:
    """Sample videos from ``noise`` (B, 3, K, H, W) with ``steps`` SDE steps (the last one deterministic)."""
    sigmas = sde_sigmas(steps).tolist()
    sample, samples, log_probs = noise.float(), [noise.float()], []
    for i in range(steps - 1):
        v = velocity(denoiser, sample, sigmas[i], context, tokens)
        mean, std = sde_step_mean_std(sample, v, sigmas[i], sigmas[i + 1], sigmas[1], noise_level)
        sample = mean + std * torch.randn(mean.shape, generator=generator).to(mean.device)
        samples.append(sample)
        log_probs.append(gaussian_log_prob(sample, mean, std))
    v = velocity(denoiser, sample, sigmas[-2], context, tokens)
    video = (sample + (sigmas[-1] - sigmas[-2]) * v).clamp(-1, 1).transpose(1, 2)
    log_probs = torch.stack(log_probs, 1) if log_probs else noise.new_zeros(len(noise), 0)
    return SDERollout(torch.stack(samples), log_probs, video)


def step_log_probs(denoiser, rollout_samples: torch.Tensor, context: torch.Tensor, tokens: torch.Tensor,
                   steps: int, noise_level: float, step_index: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Log-probability under ``denoiser`` of stochastic step ``step_index`` of a stored rollout, with
    gradients; also the step's mean (for the KL to a reference) and its standard deviation."""
    sigmas = sde_sigmas(steps).tolist()
    before, after = rollout_samples[step_index], rollout_samples[step_index + 1]
    v = velocity(denoiser, before, sigmas[step_index], context, tokens)
    mean, std = sde_step_mean_std(before, v, sigmas[step_index], sigmas[step_index + 1], sigmas[1], noise_level)
    return gaussian_log_prob(after, mean, std), mean, std

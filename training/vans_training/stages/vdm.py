"""``vdm``: the flow-matching teacher: context frames + caption -> the K frames of the next event.

Each step noises the recorded future frames to a random timestep, ``x_t = (1 - s) x_0 + s z`` (the
engine's :func:`flow_matching_inputs`, the convention of diffusers' ``FlowMatchEulerDiscreteScheduler``).
With ``prediction: velocity`` the transformer regresses the velocity ``z - x_0``. With the default
``prediction: current_frame_residual`` it predicts ``x_0`` minus the current frame, starts from
"nothing moves" (zeroed output layer) and is trained on the clean video, ``|x_t - s v - x_0|^2``,
which weighs every noise level by what it gets wrong in pixels. The caption reaches the transformer
as MiniLM tokens; captions repeat, so their tokens are computed once. The saved weights are an
exponential moving average of the trained ones.

**Action consistency** (``action_model``, ``action_weight``): a video the planner acts on is only as
good as the actions an inverse-dynamics head can read from it. With these set, a frozen IDM reads the
K actions from the clean video the VDM predicts at each training step (current frame, then the
prediction), and their squared error to the recorded actions is added to the loss, so the gradient
says where the gripper has to be, not only what the pixels look like. The pixel loss alone spends
itself on the whole desk, while the gripper that the actions move covers a few pixels of it. This is
our differentiable stand-in for NSP's causal-consistency reward. ``init_from`` starts from a trained
VDM (a teacher or the distilled student) to fine-tune it so. ``random_shift`` and
``photometric_jitter`` move and recolour a sample's context and future alike (``vans_training.augment``),
for scenes the train split never shows.

**Unrolled sampler** (``unrolled_steps: N``): instead of one noise level per sample, run the N-step
Euler sampler the planner deploys, with gradients, from pure noise. Every step's predicted clean video
is trained against the recorded future, and the action term scores the sampler's output. A few-step
student sees only N noise levels, and from the second step on its input is built from its own first
guess, not from the recorded future noised: training on that path trains what the planner runs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from vans_engine.models.idm import InverseDynamicsModel, load_idm, require_frame_reader
from vans_engine.models.vdm import (
    CaptionEncoder,
    VideoDiffusionSampler,
    as_denoiser,
    flow_matching_inputs,
    load_vdm,
    make_scheduler,
    make_vdm,
    pack_model_input,
    zero_output_layer,
)

from vans_training.augment import augment_clips
from vans_training.config import VDMTrainConfig
from vans_training.data import NextEventBatch, task_corpus, to_model_frames, train_and_valid
from vans_training.metrics import psnr
from vans_training.trainer import FINAL, PRETRAINED_MODEL, Stage

WEIGHTS = "diffusion_pytorch_model.safetensors"


def resolve_component_folder(path: str | Path, component: str) -> Path:
    """A model folder (``config.json`` + weights) given it, a stage output (its ``final/``), a
    ``grpo-joint`` output (its ``final/<component>/``) or a planner checkpoint (its ``<component>/``)."""
    path = Path(path)
    for candidate in (path / FINAL, path / FINAL / component, path / component, path):
        if (candidate / "config.json").is_file() and (candidate / WEIGHTS).is_file():
            return candidate
    raise FileNotFoundError(f"no {component} (config.json + {WEIGHTS}) in {path}, {path / FINAL} "
                            f"or {path / component}")


def resolve_vdm_folder(path: str | Path) -> Path:
    return resolve_component_folder(path, "vdm")


def trained_prediction(folder: Path) -> str | None:
    """The prediction a VDM folder was trained with: recorded in the ``config.json`` of the stage
    output it is the ``final/`` or a ``checkpoints/<step>/pretrained_model/`` of (older ``vdm`` runs
    without the field trained velocities), or in a planner checkpoint's ``model_index.json``; None
    when neither is there."""
    folder = Path(folder).resolve()
    planner_index = folder.parent / "model_index.json"
    run = None
    if folder.name == FINAL:
        run = folder.parent
    elif folder.name == PRETRAINED_MODEL:  # OUTPUT_DIR/checkpoints/<step>/pretrained_model
        run = folder.parent.parent.parent
    if run is not None and (run / "config.json").is_file():
        return json.loads((run / "config.json").read_text()).get("prediction", "velocity")
    if planner_index.is_file():
        return json.loads(planner_index.read_text())["planner"].get("vdm_prediction", "velocity")
    return None


class CaptionTokens:
    """MiniLM tokens of captions, computed once per distinct caption."""

    def __init__(self, device: torch.device, captions: list[str] = ()):
        self.encoder = CaptionEncoder()
        self.device = device
        self.cache: dict[str, torch.Tensor] = {}
        self.add(list(captions))

    def add(self, captions: list[str]) -> None:
        new = sorted(set(captions) - set(self.cache))
        for start in range(0, len(new), 64):
            tokens, _ = self.encoder(new[start:start + 64])
            self.cache.update({c: t.to(self.device) for c, t in zip(new[start:start + 64], tokens)})

    def __call__(self, captions: list[str]) -> torch.Tensor:
        self.add(captions)
        return torch.stack([self.cache[c] for c in captions])


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def flow_matching_loss(denoiser, context: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor,
                       tokens: torch.Tensor, sigmas: torch.Tensor, target: str = "velocity") -> torch.Tensor:
    """Flow-matching loss at noise levels ``sigmas`` (B,) in [0, 1].

    ``context`` (B, T, 3, H, W) and ``clean`` / ``noise`` (B, 3, K, H, W), all in [-1, 1] units.
    ``target="velocity"``: MSE of the velocity; ``"clean"``: MSE of the clean video it implies,
    ``x_t - sigma * velocity`` (the velocity MSE weighted by sigma squared).
    """
    return flow_matching_terms(denoiser, context, clean, noise, tokens, sigmas, target)[0]


def flow_matching_terms(denoiser, context: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor,
                        tokens: torch.Tensor, sigmas: torch.Tensor,
                        target: str = "velocity") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`flow_matching_loss` and the clean video the denoiser predicts, (B, 3, K, H, W)."""
    timesteps = sigmas * 1000.0
    noisy, velocity_target = flow_matching_inputs(clean, noise, timesteps)
    velocity = denoiser(hidden_states=pack_model_input(noisy, context), timestep=timesteps,
                        encoder_hidden_states=tokens, return_dict=False)[0].float()
    predicted_clean = noisy - sigmas.view(-1, 1, 1, 1, 1) * velocity
    if target == "velocity":
        return F.mse_loss(velocity, velocity_target.float()), predicted_clean
    return F.mse_loss(predicted_clean, clean.float()), predicted_clean


def unrolled_sampling_terms(denoiser, scheduler, context: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor,
                            tokens: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Euler sampler of ``VideoDiffusionSampler`` for ``steps`` steps from ``noise``, with gradients:
    the mean over steps of the squared error of each step's predicted clean video to ``clean``, and the
    sampler's output (B, 3, K, H, W)."""
    scheduler.set_timesteps(steps)
    sample, errors = noise, []
    for sigma, next_sigma in zip(scheduler.sigmas[:-1].tolist(), scheduler.sigmas[1:].tolist()):
        timesteps = torch.full((len(sample),), sigma * 1000.0, device=sample.device)
        velocity = denoiser(hidden_states=pack_model_input(sample, context), timestep=timesteps,
                            encoder_hidden_states=tokens, return_dict=False)[0].float()
        errors.append(F.mse_loss(sample - sigma * velocity, clean.float()))
        sample = sample + (next_sigma - sigma) * velocity
    return torch.stack(errors).mean(), sample


def action_chunk_error(idm: InverseDynamicsModel, current: torch.Tensor, video: torch.Tensor,
                       actions: torch.Tensor, mask: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the actions ``idm`` reads from ``video`` (B, 3, K, H, W) after the
    ``current`` frame (B, 3, H, W) and ``state`` (B, state_dim), against ``actions`` (B, K, A) where
    ``mask`` (B, K) holds."""
    frames = torch.cat([current.unsqueeze(1), video.transpose(1, 2).clamp(-1, 1)], dim=1)
    error = (idm.predict_action_chunk(frames, state) - actions) ** 2
    weight = mask.float().unsqueeze(-1)
    return (error * weight).sum() / (weight.sum() * actions.shape[-1]).clamp(min=1)


def loss_target(prediction: str) -> str:
    """What a parameterization is trained on (see the module docstring)."""
    return "velocity" if prediction == "velocity" else "clean"


def transformer_of(denoiser) -> torch.nn.Module:
    """The Wan transformer inside a denoiser (itself, or the one a residual wrapper holds)."""
    return getattr(denoiser, "transformer", denoiser)


class VDMStage(Stage):
    name = "vdm"
    config_class = VDMTrainConfig

    def __init__(self, config: VDMTrainConfig, device: torch.device):
        super().__init__(config, device)
        self.train_data, self.valid_data = train_and_valid(config, expert_branches=config.expert_branches)
        self.tokens = CaptionTokens(device, task_corpus() + self.train_data.caption_corpus())
        self.scheduler = make_scheduler(shift=config.shift)
        self.model = self.build_model().to(device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if config.ema_decay else None
        self.action_idm = None
        if config.action_model:
            # frozen and outside self.model: it scores the videos, it is not trained (nor synchronised by DDP)
            folder = resolve_component_folder(config.action_model, "idm")
            idm = require_frame_reader(load_idm(folder), folder, "the action-consistency term (action_model)")
            self.action_idm = idm.to(device).requires_grad_(False).eval()

    def build_model(self):
        """The denoiser being trained, wrapped per ``config.prediction``: the VDM at ``config.init_from``,
        else a fresh transformer."""
        if self.config.init_from:
            return as_denoiser(self.load_trained_vdm(self.config.init_from), self.config.prediction)
        transformer = make_vdm(**self.config.vdm)
        if self.config.prediction == "current_frame_residual":
            zero_output_layer(transformer)
        return as_denoiser(transformer, self.config.prediction)

    def load_trained_vdm(self, path: str | Path):
        """The VDM transformer at ``path``, refused when it was trained with another prediction."""
        folder = resolve_vdm_folder(path)
        trained_with = trained_prediction(folder)
        if trained_with not in (None, self.config.prediction):
            raise ValueError(f"prediction is {self.config.prediction!r} but the VDM {folder} was trained "
                             f"with {trained_with!r}")
        return load_vdm(folder)

    # -- training ---------------------------------------------------------------------------------------

    def model_inputs(self, batch: NextEventBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Context (B, T, 3, H, W), clean future (B, 3, K, H, W) and caption tokens on the device."""
        context = to_model_frames(batch.context, self.device)
        clean = to_model_frames(batch.future, self.device).transpose(1, 2)
        return context, clean, self.tokens(batch.captions)

    def compute_loss(self, rng: np.random.Generator):
        batch = self.train_data.random_batch(rng, self.config.batch_size)
        context, clean, tokens = self.model_inputs(batch)
        generator = torch_generator(rng)
        if self.config.random_shift or self.config.photometric_jitter:
            context, clean = self.augment(context, clean, generator)
        noise = torch.randn(clean.shape, generator=generator).to(self.device)
        sigmas = torch.rand(len(clean), generator=generator).to(self.device)
        return self.training_loss(batch, context, clean, noise, tokens, sigmas)

    def augment(self, context: torch.Tensor, clean: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The same random shift and colour change for a sample's context and future frames."""
        frames = torch.cat([context, clean.transpose(1, 2)], dim=1)
        frames = augment_clips(frames, self.config.random_shift, self.config.photometric_jitter, generator,
                               views=len(self.train_data.cameras))
        return frames[:, :context.shape[1]], frames[:, context.shape[1]:].transpose(1, 2)

    def training_loss(self, batch: NextEventBatch, context: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor,
                      tokens: torch.Tensor, sigmas: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Flow matching towards ``clean`` (or the unrolled sampler's error), plus the action-consistency
        term when an IDM is given (against the batch's recorded actions)."""
        if self.config.unrolled_steps:
            flow_loss, predicted = unrolled_sampling_terms(self.forward_model, self.scheduler, context, clean,
                                                           noise, tokens, self.config.unrolled_steps)
        else:
            flow_loss, predicted = flow_matching_terms(self.forward_model, context, clean, noise, tokens, sigmas,
                                                       loss_target(self.config.prediction))
        if self.action_idm is None:
            return flow_loss, {"loss": flow_loss.item()}
        action_loss = action_chunk_error(self.action_idm, context[:, -1], predicted,
                                         torch.from_numpy(batch.actions).to(self.device),
                                         torch.from_numpy(batch.action_mask).to(self.device),
                                         torch.from_numpy(batch.state[:, 0]).to(self.device))
        loss = flow_loss + self.config.action_weight * action_loss
        return loss, {"loss": loss.item(), "flow_loss": flow_loss.item(), "action_loss": action_loss.item()}

    def after_step(self) -> None:
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters()):
                    e.lerp_(p, 1.0 - self.config.ema_decay)

    def sampling_model(self):
        return self.ema if self.ema is not None else self.model

    # -- evaluation --------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, model, batch: NextEventBatch, steps: int, seed: int = 0) -> np.ndarray:
        """(B, K, S, S, 3) uint8 videos from ``model`` with ``steps`` Euler steps and seeded noise."""
        context, _, tokens = self.model_inputs(batch)
        sampler = VideoDiffusionSampler(model, make_scheduler(shift=self.config.shift),
                                        num_frames=self.config.future_frames, image_size=tuple(context.shape[-2:]))
        frames = sampler(context, tokens, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                         output_type="uint8").frames
        return frames.permute(0, 1, 3, 4, 2).cpu().numpy()

    @torch.no_grad()
    def validation_loss(self, model, batch: NextEventBatch) -> float:
        """Flow-matching loss at fixed noise levels and noise, comparable across evaluations."""
        context, clean, tokens = self.model_inputs(batch)
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)).to(self.device)
        levels = [0.25, 0.5, 0.75, 1.0]
        return float(np.mean([flow_matching_loss(model, context, clean, noise, tokens,
                                                  torch.full((len(clean),), s, device=self.device),
                                                  loss_target(self.config.prediction)).item()
                              for s in levels]))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        batch = self.valid_data.batch(self.valid_data.fixed_indices(min(self.config.eval_samples, 32)))
        model = self.sampling_model()
        video = self.sample(model, batch, self.config.eval_steps)
        # Copying the current frame K times is the baseline a useful video model must beat.
        still = np.repeat(batch.context[:, -1:], self.config.future_frames, axis=1)
        scores = {"val_loss": self.validation_loss(model, batch), "psnr": psnr(video, batch.future),
                  "psnr_copy_current_frame": psnr(still, batch.future)}
        cameras = self.valid_data.cameras
        if len(cameras) > 1:  # which view the model draws worse
            for name, view in zip(cameras, self.view_slices(video.shape[3], len(cameras))):
                scores[f"psnr_{name}"] = psnr(video[..., view, :], batch.future[..., view, :])
        if self.action_idm is not None:
            scores.update(self.action_scores(batch, video))
        return scores

    @staticmethod
    def view_slices(width: int, views: int) -> list[slice]:
        """Column slices of the ``views`` camera views that lie side by side in a frame ``width`` wide."""
        return [slice(i * width // views, (i + 1) * width // views) for i in range(views)]

    def action_scores(self, batch: NextEventBatch, video: np.ndarray) -> dict[str, float]:
        """How well the action model reads the recorded actions from sampled videos (B, K, S, S, 3),
        beside the same on the recorded future (its ceiling) and on the current frame held (a video
        that shows no motion)."""
        current = to_model_frames(batch.context[:, -1:], self.device)[:, 0]
        actions = torch.from_numpy(batch.actions).to(self.device)
        mask = torch.from_numpy(batch.action_mask).to(self.device)
        state = torch.from_numpy(batch.state[:, 0]).to(self.device)

        def error(frames: np.ndarray) -> float:
            video_tensor = to_model_frames(frames, self.device).transpose(1, 2)
            return float(action_chunk_error(self.action_idm, current, video_tensor, actions, mask, state))

        still = np.repeat(batch.context[:, -1:], self.config.future_frames, axis=1)
        scores = {"action_mse": error(video), "action_mse_recorded": error(batch.future),
                  "action_mse_still": error(still)}
        cameras = self.valid_data.cameras
        if len(cameras) > 1:
            # One view drawn, the others recorded: how much of the action error each drawn view carries.
            for name, view in zip(cameras, self.view_slices(video.shape[3], len(cameras))):
                one_drawn = batch.future.copy()
                one_drawn[..., view, :] = video[..., view, :]
                scores[f"action_mse_drawn_{name}"] = error(one_drawn)
        return scores

    # -- checkpoints -------------------------------------------------------------------------------------

    def save_pretrained(self, path: Path) -> None:
        transformer_of(self.sampling_model()).save_pretrained(path)

    def extra_state(self) -> dict:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

"""``distill``: a 1-4 step student from the flow-matching teacher, by rectified-flow reflow.

Why reflow (Liu et al., "Flow Straight and Fast"): the teacher's probability-flow ODE couples each
noise ``z`` with one video ``x = ODE(z)``. Training a flow on those couplings, rather than on
independent (noise, data) pairs, makes its paths nearly straight, and a straight path is followed
exactly by one Euler step. It needs only teacher *samples*, made once and stored, so every training
step costs one student forward/backward (consistency distillation calls the teacher at every step,
progressive distillation needs log2(teacher steps) rounds). The student keeps the teacher's
architecture and starts from its weights; the sampler and the scheduler stay the same, only the
step count drops, which keeps the ONNX export and every backend unchanged.

1. ``prepare``: draw ``num_pairs`` training samples and seeded noise, run the teacher for
   ``teacher_steps`` Euler steps, and store the videos (float16) in ``OUTPUT_DIR/reflow/`` in chunks;
   a killed run keeps the finished chunks.
2. Each step: flow matching on (teacher video, its noise) pairs at uniform noise levels, plus a share
   ``real_data_fraction`` of ordinary flow matching on recorded videos.
3. Evaluation: PSNR against the recorded future of the student at ``student_steps`` and of the
   teacher at ``student_steps`` and at ``teacher_steps``, on the same samples and noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from vans_engine.models.vdm import VideoDiffusionSampler, as_denoiser, make_scheduler

from vans_training.config import DistillConfig
from vans_training.metrics import psnr
from vans_training.stages.vdm import VDMStage, torch_generator

PAIRS_DIR = "reflow"


def pair_noise(index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise of reflow pair ``index``: seeded by the index, so it is never stored."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(1_000_003 * (index + 1)))


class DistillStage(VDMStage):
    name = "distill"
    config_class = DistillConfig

    def __init__(self, config: DistillConfig, device: torch.device):
        super().__init__(config, device)
        teacher = self.load_trained_vdm(config.teacher).to(device).requires_grad_(False)
        self.teacher = as_denoiser(teacher, config.prediction)
        self.pair_samples: np.ndarray | None = None
        self.pair_videos: torch.Tensor | None = None

    def build_model(self):
        """The student: the teacher's weights, read the same way (``config.prediction``)."""
        return as_denoiser(self.load_trained_vdm(self.config.teacher), self.config.prediction)

    def video_shape(self) -> tuple[int, ...]:
        return (3, self.config.future_frames, *self.train_data.frame_size)

    # -- 1. reflow pairs ----------------------------------------------------------------------------------

    @torch.no_grad()
    def prepare(self, output_dir: Path, rank: int, world_size: int) -> None:
        config = self.config
        folder = output_dir / PAIRS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        samples = np.random.default_rng(config.seed).integers(0, len(self.train_data), config.num_pairs)
        sampler = VideoDiffusionSampler(self.teacher, make_scheduler(shift=config.shift),
                                        num_frames=config.future_frames, image_size=self.train_data.frame_size)
        starts = list(range(0, config.num_pairs, config.pair_batch_size))
        for chunk, start in enumerate(tqdm(starts, desc="reflow pairs from the teacher", disable=rank != 0)):
            path = folder / f"chunk_{chunk:05d}.pt"
            if not path.exists() and chunk % world_size == rank:
                indices = np.arange(start, min(start + config.pair_batch_size, config.num_pairs))
                context, _, tokens = self.model_inputs(self.train_data.batch(samples[indices]))
                noise = torch.stack([pair_noise(int(i), self.video_shape()) for i in indices]).to(self.device)
                video = sampler(context, tokens, num_inference_steps=config.teacher_steps, latents=noise).frames
                tmp = path.with_suffix(".tmp")
                torch.save(video.transpose(1, 2).half().cpu(), tmp)  # (B, 3, K, H, W)
                tmp.rename(path)
        if world_size > 1:
            torch.distributed.barrier()
        self.pair_samples = samples
        self.pair_videos = torch.cat([torch.load(p) for p in sorted(folder.glob("chunk_*.pt"))])

    # -- 2. training --------------------------------------------------------------------------------------

    def compute_loss(self, rng: np.random.Generator):
        config = self.config
        generator = torch_generator(rng)
        num_real = int(round(config.batch_size * config.real_data_fraction))
        pairs = rng.integers(0, len(self.pair_videos), config.batch_size - num_real)
        real = rng.integers(0, len(self.train_data), num_real)
        batch = self.train_data.batch(np.concatenate([self.pair_samples[pairs], real]))
        context, clean_real, tokens = self.model_inputs(batch)
        clean = torch.cat([self.pair_videos[pairs].float().to(self.device), clean_real[len(pairs):]])
        noise = torch.cat([torch.stack([pair_noise(int(i), self.video_shape()) for i in pairs]).to(self.device),
                           torch.randn((num_real, *self.video_shape()), generator=generator).to(self.device)])
        sigmas = torch.rand(len(clean), generator=generator).to(self.device)
        return self.training_loss(batch, context, clean, noise, tokens, sigmas)

    # -- 3. evaluation ------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        config = self.config
        batch = self.valid_data.batch(self.valid_data.fixed_indices(min(config.eval_samples, 32)))
        teacher_full = self.sample(self.teacher, batch, config.teacher_steps)
        student = self.sample(self.sampling_model(), batch, config.student_steps)
        return {
            f"psnr_student_{config.student_steps}_steps": psnr(student, batch.future),
            f"psnr_teacher_{config.student_steps}_steps": psnr(self.sample(self.teacher, batch, config.student_steps),
                                                              batch.future),
            f"psnr_teacher_{config.teacher_steps}_steps": psnr(teacher_full, batch.future),
            "psnr_student_vs_teacher": psnr(student, teacher_full),
        }

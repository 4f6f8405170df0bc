"""The training loop every stage shares, readable top to bottom (nanoGPT's ``train.py`` shape).

One process:

    vans-train vdm --config training/configs/vdm.yaml

Several GPUs on one node, or several nodes, with torchrun (DDP; each rank draws its own batches):

    torchrun --standalone --nproc_per_node=8 -m vans_training.cli vdm --config training/configs/vdm.yaml

A stage supplies the model, the loss and the evaluation (:class:`Stage`); this module supplies the
rest: distributed set-up from torchrun's environment, the optimiser and its schedule, a tqdm bar,
TensorBoard scalars (``OUTPUT_DIR/logs``), a JSON-lines log (``OUTPUT_DIR/log.jsonl``) and
checkpoints::

    OUTPUT_DIR/checkpoints/000250/pretrained_model/   a loadable model (the stage's save_pretrained)
    OUTPUT_DIR/checkpoints/000250/training_state.pt   optimiser, step, random state
    OUTPUT_DIR/checkpoints/last                       -> the newest step folder
    OUTPUT_DIR/final/                                 the model after the last step

Running the same command again resumes from ``checkpoints/last``: batches are drawn from a generator
seeded by (seed, step, rank), so a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vans_training.config import TrainConfig

CHECKPOINTS, LAST, FINAL = "checkpoints", "last", "final"
PRETRAINED_MODEL, TRAINING_STATE = "pretrained_model", "training_state.pt"


class Stage:
    """What a training stage provides to :func:`train`.

    Attributes:
        name (`str`): the CLI verb.
        model (`nn.Module`): the trained parameters; the loop wraps it in DDP as ``forward_model``.
    """

    name = "stage"
    model: nn.Module

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config, self.device = config, device
        self.forward_model: nn.Module | None = None  # the model, or its DDP wrapper

    def prepare(self, output_dir: Path, rank: int, world_size: int) -> None:
        """Work done once before the first step (and again, skipping what exists, after a resume)."""

    def compute_loss(self, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Draw a batch with ``rng`` and return its loss and scalars to log."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimiser step (EMA updates)."""

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation scalars."""
        return {}

    def save_pretrained(self, path: Path) -> None:
        raise NotImplementedError

    def extra_state(self) -> dict:
        """State besides the model's weights that a resumed run needs (EMA weights)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


def get_lr(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (config.lr - config.min_lr)


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def setup_distributed() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; initialises the process group."""
    if "RANK" not in os.environ:
        return 0, 0, 1
    rank, local_rank, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, local_rank, world


def last_checkpoint(output_dir: Path) -> Path | None:
    last = output_dir / CHECKPOINTS / LAST
    return last.resolve() if last.exists() else None


def save_checkpoint(stage: Stage, optimizer: torch.optim.Optimizer, step: int, config: TrainConfig,
                    output_dir: Path) -> Path:
    """Write ``checkpoints/<step>/`` through a temporary folder, then repoint ``last``: a kill midway
    leaves the previous checkpoint intact."""
    root = output_dir / CHECKPOINTS
    final, tmp = root / f"{step:06d}", root / f".{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    stage.save_pretrained(tmp / PRETRAINED_MODEL)
    torch.save({"model": stage.model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "config": config.__dict__, "extra": stage.extra_state(),
                "torch_rng": torch.get_rng_state()}, tmp / TRAINING_STATE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    link = root / f".{LAST}.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(final.name)
    link.rename(root / LAST)
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    for old in steps[:-max(1, config.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(stage: Stage, optimizer: torch.optim.Optimizer, path: Path) -> int:
    state = torch.load(path / TRAINING_STATE, map_location=stage.device, weights_only=False)
    stage.model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    stage.load_extra_state(state.get("extra", {}))
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def train(stage_class: type[Stage], config: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) a stage; returns ``OUTPUT_DIR/final``."""
    # -- distributed set-up and seeds ------------------------------------------------------------------
    rank, local_rank, world_size = setup_distributed()
    master = rank == 0
    device = resolve_device(config.device, local_rank)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed + rank)
    output_dir = Path(config.output_dir)
    if master:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps({"stage": stage_class.name, **config.__dict__}, indent=2))

    # -- model, optimiser, resume -----------------------------------------------------------------------
    stage = stage_class(config, device)
    optimizer = torch.optim.AdamW([p for p in stage.model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    step = 0
    if (resume_from := last_checkpoint(output_dir)) is not None:
        step = load_checkpoint(stage, optimizer, resume_from)
        if master:
            print(f"resuming {stage.name} from {resume_from} at step {step}")
    stage.prepare(output_dir, rank, world_size)
    stage.forward_model = (DistributedDataParallel(stage.model, device_ids=[local_rank] if device.type == "cuda"
                                                   else None) if world_size > 1 else stage.model)
    writer = log_file = None
    if master:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(output_dir / "logs"), purge_step=step)
        log_file = open(output_dir / "log.jsonl", "a")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())

    def log(values: dict[str, float], kind: str) -> None:
        if not master:
            return
        for key, value in values.items():
            writer.add_scalar(f"{kind}/{key}", value, step)
        log_file.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        log_file.flush()

    # -- the loop -------------------------------------------------------------------------------------
    bar = tqdm(total=config.max_steps, initial=step, desc=stage.name, disable=not (master and progress),
               dynamic_ncols=True)
    stage.model.train()
    started, last_logged = time.perf_counter(), step
    while step < config.max_steps:
        lr = get_lr(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([config.seed, step, rank])
        with autocast:
            loss, info = stage.compute_loss(rng)
        loss.backward()
        if config.grad_clip:
            info["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(stage.model.parameters(), config.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stage.after_step()
        step += 1
        bar.update(1)

        if step % config.log_freq == 0 or step == config.max_steps:
            elapsed = time.perf_counter() - started
            log({**info, "lr": lr, "steps_per_s": (step - last_logged) / max(elapsed, 1e-9)}, "train")
            bar.set_postfix(loss=f"{info['loss']:.4f}")
            started, last_logged = time.perf_counter(), step
        if step % config.eval_freq == 0 or step == config.max_steps:
            stage.model.eval()
            if master:
                log(stage.evaluate(), "eval")
            stage.model.train()
        if master and (step % config.save_freq == 0 or step == config.max_steps):
            save_checkpoint(stage, optimizer, step, config, output_dir)
    bar.close()

    # -- the final model --------------------------------------------------------------------------------
    final = output_dir / FINAL
    if master:
        shutil.rmtree(final, ignore_errors=True)
        stage.model.eval()
        stage.save_pretrained(final)
        writer.close()
        log_file.close()
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def read_log(output_dir: str | Path, kind: str = "train") -> list[dict]:
    """The rows of ``log.jsonl`` of one kind (``train`` or ``eval``)."""
    path = Path(output_dir) / "log.jsonl"
    if not path.exists():
        return []
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["kind"] == kind]

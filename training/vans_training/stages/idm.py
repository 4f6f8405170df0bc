"""``idm``: inverse dynamics on expert and perturbed transitions.

Both heads of :class:`InverseDynamicsModel` learn at once from clips of the current frame and the K
frames after it: the pair head on every single transition (with proprioception), the chunk head on
the whole clip, which is what the planner feeds it from the VDM. Perturbed episodes (expert actions
plus noise) widen the actions seen beyond the expert's. The future frames are degraded a little
(noise, and blur on some clips) because the planner's frames come from a video model, not a camera.
Optional per-clip augmentations (``random_shift``, ``photometric_jitter``) move and recolour whole
clips alike, so that the actions stay right while scenes look like ones the train split never shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vans_engine.constants import ACTION_MASK, ACTIONS, FRAMES, STATE
from vans_engine.models.idm import InverseDynamicsModel

from vans_training.config import IDMTrainConfig
from vans_training.data import NextEventBatch, to_model_frames, train_and_valid
from vans_training.trainer import Stage


class IDMLoss(nn.Module):
    """The IDM with its loss as ``forward``, so that DDP synchronises both heads' gradients."""

    def __init__(self, idm: InverseDynamicsModel):
        super().__init__()
        self.idm = idm

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.idm.compute_loss(batch)


def degrade(frames: torch.Tensor, noise_std: float, blur_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise to (B, N, 3, H, W) frames in [-1, 1] and blur a share of the clips (2x down, up)."""
    b, n, c, h, w = frames.shape
    blur = torch.rand(b, generator=generator) < blur_fraction
    if blur.any():
        chosen = frames[blur].reshape(-1, c, h, w)
        blurred = F.interpolate(F.avg_pool2d(chosen, 2), size=(h, w), mode="bilinear", align_corners=False)
        frames = frames.clone()
        frames[blur] = blurred.reshape(-1, n, c, h, w)
    return (frames + noise_std * torch.randn(frames.shape, generator=generator).to(frames.device)).clamp(-1, 1)


def jitter_photometry(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and per-channel gains, one draw per clip, on (B, N, 3, H, W) in [-1, 1]."""
    b = frames.shape[0]

    def draw(*shape):
        return (1.0 + strength * (2 * torch.rand(*shape, generator=generator) - 1)).to(frames.device)

    pixels = (frames + 1) / 2
    mean = pixels.mean(dim=(1, 2, 3, 4), keepdim=True)
    pixels = (pixels - mean) * draw(b, 1, 1, 1, 1) + mean  # contrast
    pixels = pixels * draw(b, 1, 1, 1, 1) * draw(b, 1, 3, 1, 1)  # brightness, colour
    return (pixels.clamp(0, 1) * 2 - 1)


def shift_clips(frames: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each (N, 3, H, W) clip of (B, N, 3, H, W) frames by one random integer offset in
    ``[-max_shift, max_shift]`` per axis, the same for all its frames; edges are replicated (DrQ's
    pad-and-crop). A gripper delta moves the gripper by nearly the same pixels wherever it is, so the
    action labels still hold."""
    if max_shift <= 0:
        return frames
    b, n, c, h, w = frames.shape
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).tolist()
    padded = F.pad(frames.reshape(b, n * c, h, w), (max_shift,) * 4, mode="replicate")
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(offsets)]).view(b, n, c, h, w)


class IDMStage(Stage):
    name = "idm"
    config_class = IDMTrainConfig

    def __init__(self, config: IDMTrainConfig, device: torch.device):
        super().__init__(config, device)
        self.train_data, self.valid_data = train_and_valid(config, context_frames=1, include_perturbed=True,
                                                           successful_only=False)
        if config.init_from:
            from vans_training.assemble import resolve_model_folder

            self.idm = InverseDynamicsModel.from_pretrained(resolve_model_folder(config.init_from)).to(device)
        else:
            self.idm = InverseDynamicsModel(image_size=config.image_size, **config.idm).to(device)
        self.model = IDMLoss(self.idm)

    def tensors(self, batch: NextEventBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        frames = to_model_frames(np.concatenate([batch.context[:, -1:], batch.future], axis=1), self.device)
        if generator is not None:
            frames = shift_clips(frames, self.config.random_shift, generator)
            if self.config.photometric_jitter:
                frames = jitter_photometry(frames, self.config.photometric_jitter, generator)
            frames = torch.cat([frames[:, :1], degrade(frames[:, 1:], self.config.frame_noise,
                                                       self.config.blur_fraction, generator)], dim=1)
        return {FRAMES: frames,
                ACTIONS: torch.from_numpy(batch.actions).to(self.device),
                ACTION_MASK: torch.from_numpy(batch.action_mask).to(self.device),
                STATE: torch.from_numpy(batch.state).to(self.device)}

    def compute_loss(self, rng: np.random.Generator):
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch = self.tensors(self.train_data.random_batch(rng, self.config.batch_size), generator)
        return self.forward_model(batch)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        batch = self.tensors(self.valid_data.batch(self.valid_data.fixed_indices(self.config.eval_samples)))
        chunk = self.idm.predict_action_chunk(batch[FRAMES])
        mask = batch[ACTION_MASK]
        error = (chunk - batch[ACTIONS])[mask]
        target = batch[ACTIONS][mask]
        # The gripper command is what grasps succeed or fail on: score its sign too.
        gripper_sign = ((chunk[..., 3][mask] > 0) == (target[:, 3] > 0)).float().mean()
        return {"chunk_mse": float((error**2).mean()), "chunk_mse_xyz": float((error[:, :3] ** 2).mean()),
                "gripper_sign_accuracy": float(gripper_sign), "loss": float(self.idm.compute_loss(batch)[0])}

    def save_pretrained(self, path: Path) -> None:
        self.idm.save_pretrained(path)


# -- DAgger: expert corrections from the states the IDM itself reaches ---------------------------------


def record_dagger(model: str | Path, base: str | Path, out: str | Path, seed_start: int, episodes_per_task: int,
                  idm_fraction: float = 0.8, tasks: list[str] | None = None, max_episode_steps: int | None = None,
                  progress: bool = True) -> dict:
    """One DAgger round for the IDM, on **train-split** scenes only; writes ``base`` plus the corrections.

    The oracle-video loop (:mod:`vans_training.policies`) is rolled with the IDM in ``model``: every
    K // 2 steps the scripted expert's branch of K + 4 steps from the state actually reached (its frames,
    actions and proprioception) is stored as a short episode, then the IDM's chunk on that branch's
    first K frames is executed (the expert's own chunk instead, with probability ``1 - idm_fraction``,
    so that later phases of the task are reached too). Branches are marked ``perturbed`` and not
    ``successful``, so only the IDM stage (``include_perturbed=True``) reads them. Episode seeds count up
    from ``seed_start``, skipping those that the valid and test splits own (ending in 8 or 9).

    Returns ``{"branches", "steps", "successes", "episodes"}``.
    """
    import copy
    import json
    import shutil

    import h5py
    import mujoco
    from vans_sim.dataset import LOW_DIM_KEYS, resolve_dataset_path, write_episode
    from vans_sim.env import RoboDeskEnv
    from vans_sim.experts import ScriptedExpert
    from vans_sim.tasks import TASKS

    from vans_training.data import seed_split
    from vans_training.policies import frames_to_tensor, load_idm

    if not 0.0 <= idm_fraction <= 1.0:
        raise ValueError(f"idm_fraction must be in [0, 1], got {idm_fraction}")
    idm, k = load_idm(model)
    replan, branch_steps = max(1, k // 2), k + 4
    seeds = [s for s in range(seed_start, seed_start + 10 * episodes_per_task) if seed_split(s) == "train"]
    seeds = seeds[:episodes_per_task]
    rng = np.random.default_rng(seed_start)
    out = resolve_dataset_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(resolve_dataset_path(base), out)
    stats = {"branches": 0, "steps": 0, "successes": 0, "episodes": 0}
    with h5py.File(out, "a") as f:
        data = f["data"]
        count, names = len(data), []
        for task in tasks or list(TASKS):
            env = RoboDeskEnv(task, image_size=idm.config.image_size, split="train",
                              max_episode_steps=max_episode_steps)
            for seed in seeds:
                obs, info = env.reset(seed=seed)
                expert = ScriptedExpert(task)
                expert.reset()
                done = False
                while not done:
                    # 1. the expert's branch from the state reached, stored as an episode
                    snapshot = (copy.copy(env.data), env._steps, env._progress, list(env._caption_choice))
                    brancher, o, inf = copy.deepcopy(expert), obs, info
                    ep = {key: [] for key in ("actions", "rewards", "dones", "states", "events", "captions")}
                    ep["obs"] = {key: [] for key in ("image", *LOW_DIM_KEYS)}
                    ep["next_obs"] = {key: [] for key in LOW_DIM_KEYS}
                    for _ in range(branch_steps):
                        action = np.clip(brancher.act(o), -1.0, 1.0).astype(np.float32)
                        for key in ep["obs"]:
                            ep["obs"][key].append(o[key])
                        ep["events"].append(inf["event_index"])
                        ep["captions"].append(inf["caption"])
                        ep["states"].append(np.concatenate([env.data.qpos, env.data.qvel]))
                        ep["rewards"].append(0.0)
                        ep["dones"].append(0)
                        o, _, _, _, inf = env.step(action)  # past the episode's end too, as the oracle does
                        ep["actions"].append(action)
                        for key in ep["next_obs"]:
                            ep["next_obs"][key].append(o[key])
                    saved, env._steps, env._progress, env._caption_choice = snapshot
                    mujoco.mj_copyData(env.data, env.model, saved)
                    ep.update(task=task, instruction=env.instruction, split="train", seed=seed, success=False,
                              perturbed=True, noise_std=0.0, event_names=[e.name for e in env.task.events])
                    name = f"demo_{count}"
                    write_episode(data.create_group(name), ep)
                    names.append(name)
                    count += 1
                    stats["branches"] += 1
                    stats["steps"] += branch_steps
                    # 2. execute the IDM's chunk (or the expert's); the tracking expert follows every step
                    if rng.random() < idm_fraction:
                        clip = np.stack(ep["obs"]["image"][: k + 1])[None]
                        with torch.no_grad():
                            chunk = idm.predict_action_chunk(frames_to_tensor(clip))[0].float().numpy()
                    else:
                        chunk = np.stack(ep["actions"][:k])
                    for action in chunk[:replan]:
                        expert.act(obs)
                        obs, _, terminated, truncated, info = env.step(np.clip(action, -1.0, 1.0).astype(np.float32))
                        if terminated or truncated:
                            done = True
                            stats["successes"] += bool(terminated)
                            break
                stats["episodes"] += 1
                if progress:
                    print(f"dagger {task} seed {seed}: {'success' if env.success else 'failure'}", flush=True)
            env.close()
        data.attrs["total"] = int(data.attrs.get("total", 0)) + stats["steps"]
        train = [n.decode() if isinstance(n, bytes) else str(n) for n in f["mask/train"][()]] + names
        del f["mask/train"]
        f["mask"].create_dataset("train", data=np.array(train, dtype="S"))
        f["data"].attrs["dagger_rounds"] = json.dumps(
            json.loads(f["data"].attrs.get("dagger_rounds", "[]"))
            + [{"model": str(model), "seed_start": seed_start, "episodes_per_task": episodes_per_task,
                "idm_fraction": idm_fraction, **stats}])
    return stats


def main(argv: list[str] | None = None) -> int:
    """``python -m vans_training.stages.idm dagger``: one DAgger round (see :func:`record_dagger`).

        python -m vans_training.stages.idm dagger --model runs/idm-shift/final --base data/train-180 \\
            --out data/train-180-dagger --seed-start 1000 --episodes 20 --idm-fraction 0.8
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vans_training.stages.idm", description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dagger", help="roll the oracle-video loop with an IDM on train scenes, add expert branches")
    p.add_argument("--model", required=True, help="IDM folder or planner checkpoint that drives the loop")
    p.add_argument("--base", required=True, help="vans-sim record dataset (train split) to copy and extend")
    p.add_argument("--out", required=True, help="output dataset folder (or .hdf5)")
    p.add_argument("--seed-start", type=int, required=True, help="first episode seed (use seeds no dataset holds)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per task")
    p.add_argument("--idm-fraction", type=float, default=0.8, help="share of plans executed with the IDM's chunk")
    p.add_argument("--tasks", default="all", help="'all' or comma-separated task names")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    stats = record_dagger(args.model, args.base, args.out, args.seed_start, args.episodes, args.idm_fraction,
                          None if args.tasks == "all" else args.tasks.split(","))
    print(stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``vans-sim record``: write expert demonstrations to a robomimic-layout HDF5 dataset.

    vans-sim record --tasks all --episodes 100 --image-size 64 --split train --seed-start 0 \\
        --out data/train --workers 2

Episodes are written by parallel workers into shards of ``--shard-size`` episodes; a shard is
written under a temporary name and renamed when complete, so an interrupted run resumes by
running the same command again: finished shards are kept and the rest is recorded. When every
shard is there they are merged into ``OUT/demo.hdf5`` and the shards are removed.

A share of the episodes (``--perturb-fraction``) is recorded with Gaussian noise added to the
expert's actions, so that an inverse-dynamics model sees transitions off the expert's path; those
episodes carry ``perturbed=True``.

Another share (``--axis-speed-fraction``) is recorded with the expert's dx, dy and dz slowed by
factors drawn per episode from ``[--min-axis-speed, 1]`` (seeded by the episode's seed, stored as
the episode's ``axis_speeds``). The expert goes straight at each target, so that in the other
episodes the three axes always arrive together; in these one axis arrives after the others, and a
model learns when each has arrived instead of taking the one the camera shows best for all three.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from vans_sim import __version__, scene
from vans_sim.dataset import DATASET_FILE, LOW_DIM_KEYS, RECORD_ARGS, DatasetError, open_hdf5, write_episode
from vans_sim.env import RoboDeskEnv
from vans_sim.policies import ExpertPolicy
from vans_sim.tasks import get_task

SETTLE_STEPS = 5  # steps recorded after success, so the outcome is in the frames


@dataclass(frozen=True)
class RecordConfig:
    tasks: tuple[str, ...]
    episodes: int  # per task
    image_size: int = 64
    split: str = "train"
    seed_start: int = 0
    shadows: bool = False
    cameras: tuple[str, ...] = ("desk",)
    perturb_fraction: float = 0.2
    noise_std: float = 0.3
    axis_speed_fraction: float = 0.0
    min_axis_speed: float = 0.35
    shard_size: int = 20
    valid_fraction: float = 0.1

    def __post_init__(self):
        for t in self.tasks:
            get_task(t)
        object.__setattr__(self, "cameras", scene.check_cameras(self.cameras))
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if not 0.0 <= self.perturb_fraction <= 1.0:
            raise ValueError(f"perturb_fraction must be in [0, 1], got {self.perturb_fraction}")
        if not 0.0 <= self.axis_speed_fraction <= 1.0:
            raise ValueError(f"axis_speed_fraction must be in [0, 1], got {self.axis_speed_fraction}")
        if not 0.0 < self.min_axis_speed <= 1.0:
            raise ValueError(f"min_axis_speed must be in (0, 1], got {self.min_axis_speed}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")

    def episode_plan(self) -> list[tuple[str, int, bool, tuple[float, float, float]]]:
        """(task, seed, perturbed, axis_speeds) for every episode, in dataset order."""
        def every(fraction: float, i: int) -> bool:  # spreads a share of the episodes evenly
            return math.floor((i + 1) * fraction) > math.floor(i * fraction)

        plan = []
        for task in self.tasks:
            for i in range(self.episodes):
                seed = self.seed_start + i
                speeds = (1.0, 1.0, 1.0)
                if every(self.axis_speed_fraction, i):
                    drawn = np.random.default_rng(seed + 2_000_003).uniform(self.min_axis_speed, 1.0, 3)
                    speeds = tuple(float(v) for v in drawn)
                plan.append((task, seed, every(self.perturb_fraction, i), speeds))
        return plan


def rollout(task: str, seed: int, split: str, image_size: int, noise_std: float = 0.0,
            env: RoboDeskEnv | None = None, shadows: bool = False, cameras: tuple[str, ...] = ("desk",),
            axis_speeds: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> dict:
    """Run the scripted expert for one episode and return everything a dataset stores."""
    env = env or RoboDeskEnv(task, image_size=image_size, split=split, shadows=shadows, cameras=cameras)
    policy = ExpertPolicy(task, 1, seed=seed + 1_000_003, noise_std=noise_std, axis_speeds=axis_speeds)
    obs, info = env.reset(seed=seed)
    policy.reset(np.array([0]))
    steps: dict[str, list] = {k: [] for k in ("actions", "rewards", "dones", "states", "events", "captions")}
    obs_seq: dict[str, list] = {k: [] for k in ("image", *LOW_DIM_KEYS)}
    next_seq: dict[str, list] = {k: [] for k in LOW_DIM_KEYS}
    success, settle = False, 0
    for _ in range(env.max_episode_steps + SETTLE_STEPS):
        batched = {k: v[None] for k, v in obs.items()}
        action = policy.act(batched)[0]
        steps["states"].append(np.concatenate([env.data.qpos, env.data.qvel]))
        steps["events"].append(info["event_index"])
        steps["captions"].append(info["caption"])
        for k in obs_seq:
            obs_seq[k].append(obs[k])
        obs, reward, terminated, truncated, info = env.step(action)
        steps["actions"].append(action)
        steps["rewards"].append(reward)
        steps["dones"].append(int(terminated and not success))
        for k in next_seq:
            next_seq[k].append(obs[k])
        success = success or terminated
        settle += success
        if settle >= SETTLE_STEPS or (truncated and not success):
            break
    return {
        **steps, "obs": obs_seq, "next_obs": next_seq,
        "task": task, "instruction": env.instruction, "split": split, "seed": seed,
        "success": bool(success), "perturbed": noise_std > 0, "noise_std": float(noise_std),
        "axis_speeds": list(axis_speeds),
        "event_names": [e.name for e in env.task.events],
    }


def _shard_path(out: Path, shard: int) -> Path:
    return out / "shards" / f"shard-{shard:05d}.hdf5"


def _record_shard(job: tuple[RecordConfig, str, int, list[tuple[int, str, int, bool]]]) -> int:
    config, out, shard, episodes = job
    path = _shard_path(Path(out), shard)
    tmp = path.with_suffix(".tmp")
    envs: dict[str, RoboDeskEnv] = {}
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for index, task, seed, perturbed, axis_speeds in episodes:
            env = envs.setdefault(task, RoboDeskEnv(task, image_size=config.image_size, split=config.split,
                                                    shadows=config.shadows, cameras=config.cameras))
            ep = rollout(task, seed, config.split, config.image_size,
                         config.noise_std if perturbed else 0.0, env=env, axis_speeds=axis_speeds)
            write_episode(data.create_group(f"demo_{index}"), ep)
    for env in envs.values():
        env.close()
    os.replace(tmp, path)
    return len(episodes)


def _check_resume(out: Path, config: RecordConfig) -> None:
    args_file = out / RECORD_ARGS
    wanted = asdict(config)
    wanted["tasks"] = list(wanted["tasks"])
    wanted["cameras"] = list(wanted["cameras"])
    if args_file.exists():
        # a setting added after that recording was made reads as its default
        defaults = {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
                    for f in fields(RecordConfig) if f.default is not MISSING}
        previous = {**defaults, **json.loads(args_file.read_text())}
        if previous != wanted:
            raise ValueError(f"{out} holds a recording with other settings ({args_file}); "
                             "use another --out or delete that folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        args_file.write_text(json.dumps(wanted, indent=2))


def _merge(out: Path, config: RecordConfig, num_shards: int) -> dict:
    final = out / DATASET_FILE
    tmp = final.with_suffix(".tmp")
    names, successful, total_steps = [], [], 0
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for shard in range(num_shards):
            path = _shard_path(out, shard)
            with open_hdf5(path) as src:
                for name in sorted(src["data"], key=lambda n: int(n.split("_")[1])):
                    src.copy(src["data"][name], data, name=name)
                    names.append(name)
                    total_steps += int(src["data"][name].attrs["num_samples"])
                    if src["data"][name].attrs["success"]:
                        successful.append(name)
        data.attrs["total"] = total_steps
        data.attrs["vans_sim_version"] = __version__
        data.attrs["env_args"] = json.dumps({
            "env_name": "vans_sim/RoboDesk-v0", "type": "vans_sim",
            "env_kwargs": {"image_size": config.image_size, "split": config.split, "shadows": config.shadows,
                           "cameras": list(config.cameras), "control_period_s": scene.CONTROL_PERIOD},
        })
        rng = np.random.default_rng(config.seed_start)
        valid = set(rng.choice(names, size=int(len(names) * config.valid_fraction), replace=False).tolist())
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([n for n in names if n not in valid], dtype="S"))
        mask.create_dataset("valid", data=np.array([n for n in names if n in valid], dtype="S"))
        mask.create_dataset("successful", data=np.array(successful, dtype="S"))
    os.replace(tmp, final)
    shutil.rmtree(out / "shards")
    return {"episodes": len(names), "steps": total_steps, "successful": len(successful)}


def record(config: RecordConfig, out: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Record the dataset described by ``config`` into ``out``; resumes an interrupted run."""
    out = Path(out)
    final = out / DATASET_FILE
    if final.exists():
        _check_resume(out, config)
        with open_hdf5(final) as f:
            if "mask" not in f:
                raise DatasetError(f"{final}: incomplete dataset (no mask group); delete it and record again")
            n = len(f["data"])
        return {"episodes": n, "resumed": True, "already_complete": True}
    _check_resume(out, config)
    (out / "shards").mkdir(parents=True, exist_ok=True)

    plan = config.episode_plan()
    jobs, done = [], 0
    for shard, start in enumerate(range(0, len(plan), config.shard_size)):
        chunk = [(i, *plan[i]) for i in range(start, min(start + config.shard_size, len(plan)))]
        path = _shard_path(out, shard)
        if path.exists():
            open_hdf5(path).close()  # a finished shard must be readable; this names it if not
            done += len(chunk)
        else:
            jobs.append((config, str(out), shard, chunk))
    num_shards = math.ceil(len(plan) / config.shard_size)

    started = time.perf_counter()
    with tqdm(total=len(plan), initial=done, unit="ep", desc="record", disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                for n in pool.imap_unordered(_record_shard, jobs):
                    bar.update(n)
        else:
            for job in jobs:
                bar.update(_record_shard(job))
    elapsed = time.perf_counter() - started
    summary = _merge(out, config, num_shards)
    summary.update(resumed=done > 0, seconds=elapsed,
                   episodes_per_minute=(len(plan) - done) / elapsed * 60 if elapsed > 0 else float("nan"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


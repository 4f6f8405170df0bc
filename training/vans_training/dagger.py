"""DAgger for the inverse-dynamics head: expert corrections from the states the IDM itself reaches.

``vans-train dagger`` runs one round; ``vans-train idm`` then trains on the extended dataset
(``training/configs/idm_pooled_dagger.yaml`` and ``idm_pooled_dagger2.yaml`` hold the two rounds behind
``models/vans-desk-64``'s IDM). Two drivers roll the loop:

- ``idm``: the IDM on the expert branch's true future frames (the oracle video), which corrects the
  IDM where its own small errors take the gripper;
- ``planner``: the whole planner (VLM caption, VDM frames, IDM) from its own camera history, which
  collects the states the deployed planner reaches, for an IDM trained on the VDM's frames there
  (``generated_future_fraction``).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import h5py
import mujoco
import numpy as np
import torch
from vans_sim.dataset import LOW_DIM_KEYS, DemoDataset, resolve_dataset_path, write_episode
from vans_sim.env import RoboDeskEnv, proprioception
from vans_sim.experts import ScriptedExpert
from vans_sim.tasks import TASKS

from vans_training.data import seed_split
from vans_training.policies import frames_to_tensor, load_idm


DRIVERS = ("idm", "planner")


class PlannerDriver:
    """The deployed planner as the DAgger loop's driver: its chunk from the last ``context_frames``
    camera frames (the first frame repeated at an episode's start, as ``PlannerPolicy`` does), the
    instruction and the proprioception."""

    def __init__(self, model: str | Path):
        from vans_engine.planner import Planner

        self.planner = Planner.from_pretrained(model)
        self.history: list[np.ndarray] = []
        self.seed = 0

    def observe(self, obs: dict[str, np.ndarray], first: bool) -> None:
        context = self.planner.config.context_frames
        self.history = [obs["image"]] * context if first else [*self.history, obs["image"]][-context:]

    def chunk(self, obs: dict[str, np.ndarray], instruction: str) -> np.ndarray:
        plan = self.planner.plan(np.stack(self.history), instruction, seed=self.seed, state=proprioception(obs))
        self.seed += 1
        return plan.actions


def record_dagger(model: str | Path, base: str | Path, out: str | Path, seed_start: int, episodes_per_task: int,
                  idm_fraction: float = 0.8, tasks: list[str] | None = None, max_episode_steps: int | None = None,
                  progress: bool = True, driver: str = "idm") -> dict:
    """One DAgger round for the IDM, on **train-split** scenes only; writes ``base`` plus the corrections.

    The loop is rolled with ``model``: every K // 2 steps the scripted expert's branch of K + 4 steps
    from the state actually reached (its frames, actions and proprioception) is stored as a short
    episode, then the driver's chunk is executed (the expert's own chunk instead, with probability
    ``1 - idm_fraction``, so that later phases of the task are reached too). With ``driver="idm"`` the
    chunk is the IDM's on that branch's first K frames (the oracle-video loop of
    :mod:`vans_training.policies`; ``model`` is an IDM folder or a planner checkpoint); with
    ``driver="planner"`` it is the planner's plan from the frames the camera saw (``model`` is a planner
    checkpoint). Branches are marked ``perturbed`` and not ``successful``, so only the IDM stage
    (``include_perturbed=True``) reads them. Episode seeds count up from ``seed_start``, skipping those
    that the valid and test splits own (ending in 8 or 9).

    The scenes render as ``base``'s did (its shadows and cameras, ``vans-sim record --shadows
    --cameras``), so that the branches look like the data they extend.

    Returns ``{"branches", "steps", "successes", "episodes"}``.
    """
    if not 0.0 <= idm_fraction <= 1.0:
        raise ValueError(f"idm_fraction must be in [0, 1], got {idm_fraction}")
    if driver not in DRIVERS:
        raise ValueError(f"driver must be one of {DRIVERS}, got {driver!r}")
    if driver == "planner":
        planner = PlannerDriver(model)
        k, image_size = planner.planner.config.future_frames, planner.planner.config.image_size
    else:
        idm, k = load_idm(model)
        image_size = idm.config.image_size
    with DemoDataset(base) as recorded:
        scene_kwargs = recorded.scene_kwargs
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
            env = RoboDeskEnv(task, image_size=image_size, split="train", max_episode_steps=max_episode_steps,
                              **scene_kwargs)
            for seed in seeds:
                obs, info = env.reset(seed=seed)
                expert = ScriptedExpert(task)
                expert.reset()
                if driver == "planner":
                    planner.observe(obs, first=True)
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
                    # 2. execute the driver's chunk (or the expert's); the tracking expert follows every step
                    if rng.random() >= idm_fraction:
                        chunk = np.stack(ep["actions"][:k])
                    elif driver == "planner":
                        chunk = planner.chunk(obs, env.instruction)
                    else:
                        clip = np.stack(ep["obs"]["image"][: k + 1])[None]
                        with torch.no_grad():
                            state = torch.from_numpy(proprioception(obs)[None])
                            chunk = idm.predict_action_chunk(frames_to_tensor(clip), state)[0].float().numpy()
                    for action in chunk[:replan]:
                        expert.act(obs)
                        obs, _, terminated, truncated, info = env.step(np.clip(action, -1.0, 1.0).astype(np.float32))
                        if driver == "planner":
                            planner.observe(obs, first=False)
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
            + [{"model": str(model), "driver": driver, "seed_start": seed_start, "episodes_per_task": episodes_per_task,
                "idm_fraction": idm_fraction, **stats}])
    return stats

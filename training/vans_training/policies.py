"""Oracle policies that split the planner's closed-loop gap into its stages.

The planner answers "what happens next?" with a caption (VLM), a generated video of it (VDM) and the
actions that video shows (IDM). Each oracle replaces stages with the simulator's ground truth:

* ``oracle-video`` (:class:`OracleVideoPolicy`): the IDM on the true future, the K frames the scripted
  expert would produce from the exact current state. Its success rate is what the planner would reach
  with a perfect VLM and a perfect VDM, so it bounds the planner from above and measures the IDM alone.
* ``oracle-caption`` (:class:`OracleCaptionPolicy`): the whole planner, told the true caption of the
  event in progress instead of asking its VLM. Between the planner and ``oracle-video``, it shows how
  much of the gap is the VLM's and how much the VDM's.

Both take ``expert_components``: the named action components are the expert's own, so each run is the
closed loop of an IDM (or, with ``oracle-caption``'s ``vlm_captions``, a whole planner) made perfect on
those components.

    vans-sim score --policy oracle-video --model runs/idm/final --tasks single --episodes 20 --out runs/oracle
    vans-sim score --policy oracle-caption --model models/vans-desk-64 --tasks single --episodes 12 --out runs/oracle-caption

How they stay exact, without any state estimation: the policy keeps one *shadow* ``RoboDeskEnv`` per
vector environment, made with the same task, split and image size, reset with the same seed as the
real environment and stepped with exactly the actions the policy returns. The simulator is
deterministic, so the shadow stays in lock-step with the real environment (checked at every step:
the shadow's image must equal ``obs["image"]`` bit for bit). Every ``replan_every`` steps the
oracle-video policy

1. snapshots the shadow's full state (a copy of MuJoCo's ``MjData`` plus the environment's step count
   and event progress) and a copy of the expert that has been tracking the episode,
2. rolls that expert K steps forward in the shadow, rendering the K frames,
3. restores the snapshot, and
4. runs the IDM on the current frame plus those K frames and queues its first ``replan_every`` actions
   (with ``expert_components``, the named components of each action, ``x``, ``y``, ``z`` or ``gripper``,
   are the expert's own: which of the IDM's outputs costs the oracle its failures);

the oracle-caption policy plans from the last ``context_frames`` frames, as ``PlannerPolicy`` does,
with the shadow's ``info["caption"]``: the paraphrase a recorded episode stores for that event.

Seeds follow ``vans-sim score``: the n-th ``reset`` of environment ``i`` is episode
``seed + n * num_envs + i``. Vector environments auto-reset in ``NEXT_STEP`` mode: after an episode
ends, the next action is ignored and the environment resets without a seed (continuing its
generator); the shadow does the same.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
from pathlib import Path

import mujoco
import numpy as np
import torch

from vans_sim.env import ACTION_DIM, IMAGE_SIZES, RoboDeskEnv, proprioception
from vans_sim.experts import ScriptedExpert
from vans_sim.randomization import SPLITS

logger = logging.getLogger(__name__)


def load_idm(model: str | Path, future_frames: int | None = None):
    """An IDM and its K from a planner checkpoint folder (``idm/`` inside) or an IDM folder (its
    ``config.json`` and weights at the top, with or without a ``model_index.json`` of hashes).

    Returns ``(idm, future_frames)``. A planner checkpoint's ``model_index.json`` fixes K
    (``planner.future_frames``); for a bare IDM folder K is ``future_frames`` (8 when not given).
    """
    from vans_engine.models.idm import load_idm as load_action_model
    from vans_engine.models.idm import require_frame_reader

    folder = Path(model)
    if (folder / "model_index.json").is_file() and (folder / "idm").is_dir():
        index = json.loads((folder / "model_index.json").read_text())
        k = int(index.get("planner", {}).get("future_frames", 8))
        if future_frames is not None and future_frames != k:
            raise ValueError(f"future_frames={future_frames} disagrees with the checkpoint's planner.future_frames={k} "
                             f"({folder / 'model_index.json'})")
        folder = folder / "idm"
    else:
        k = 8 if future_frames is None else int(future_frames)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{model}: neither a planner checkpoint (model_index.json with idm/) nor an IDM folder "
                         f"(config.json)")
    if k < 1:
        raise ValueError(f"future_frames must be >= 1, got {k}")
    return require_frame_reader(load_action_model(folder), folder, "reading actions from true frames"), k


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, N, H, W, 3) uint8 -> (B, N, 3, H, W) float in [-1, 1], as the planner feeds its IDM."""
    return torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0


class ShadowedPolicy:
    """A policy with one shadow environment (and a tracking scripted expert) per scored environment,
    stepped in lock-step with it (see the module docstring). Subclasses fill ``self.queued[i]`` in
    :meth:`plan` for the environments whose queue ran out.

    Args:
        task (`str`): the vans_sim task.
        num_envs (`int`): environments stepped together.
        seed (`int`): the scorer's ``seed_start``; shadow environments are reset with
            ``seed + n * num_envs + i`` at the n-th reset of environment ``i``.
        split (`str`): split of the scored environments (the shadows must match).
        image_size (`int`): image size of the scored environments.
        max_episode_steps (`int`, *optional*): the scored environments' horizon; the task's own by default.
        history (`int`, defaults to 1): images kept in ``self.history[i]``, newest last.
        render_shadows (`bool`, defaults to `False`): whether the scored environments render the sun's
            shadows (``RoboDeskEnv(shadows=...)``, ``vans-sim score --shadows``); the shadow environments
            must match.
        cameras (`tuple[str, ...]`, defaults to `("desk",)`): the views the scored environments render
            (``vans-sim score --cameras``); the shadow environments render the same, and a real image of
            another shape stops the episode with an error that says so.
    """

    needs_image = True

    def __init__(self, task: str, num_envs: int, seed: int, split: str, image_size: int,
                 max_episode_steps: int | None, history: int = 1, render_shadows: bool = False,
                 cameras: tuple[str, ...] = ("desk",)):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.task, self.num_envs, self.seed = task, num_envs, int(seed)
        self.shadows = [RoboDeskEnv(task=task, image_size=image_size, split=split, observe_image=True,
                                    max_episode_steps=max_episode_steps, shadows=render_shadows,
                                    cameras=cameras)
                        for _ in range(num_envs)]
        self.experts = [ScriptedExpert(task) for _ in range(num_envs)]
        self.resets = np.zeros(num_envs, int)  # resets seen per environment, for the seed scheme
        self.current: list[dict | None] = [None] * num_envs  # the shadow's latest observation
        self.current_info: list[dict | None] = [None] * num_envs  # and its info (event, caption)
        self.ended = np.zeros(num_envs, bool)  # the shadow's episode ended: the next action is ignored
        self.queued = [np.zeros((0, ACTION_DIM), np.float32) for _ in range(num_envs)]
        # the shadow's last ``history`` images, the first one repeated where the episode is younger
        self.history = [collections.deque(maxlen=history) for _ in range(num_envs)]
        self.mismatches = 0  # steps at which a shadow's image differed from the real one
        self._warned = False

    # -- policy interface ---------------------------------------------------------------------------

    def reset(self, env_ids: np.ndarray) -> None:
        for i in np.asarray(env_ids, int):
            seed = self.seed + int(self.resets[i]) * self.num_envs + int(i)
            self.resets[i] += 1
            self._start_episode(i, seed)

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        # 1. lock-step check: each shadow must show exactly what its real environment shows
        for i in range(self.num_envs):
            self._check_lock_step(i, obs["image"][i])
        # 2. plans for the environments whose queue ran out
        need = [i for i in range(self.num_envs) if not self.ended[i] and len(self.queued[i]) == 0]
        if need:
            self.plan(need)
        # 3. this step's actions; the shadows take exactly the same ones
        actions = np.zeros((self.num_envs, ACTION_DIM), np.float32)
        for i in range(self.num_envs):
            if self.ended[i]:  # the real environment ignores this action and resets without a seed
                self._start_episode(i, None)
                continue
            actions[i] = np.clip(self.queued[i][0], -1.0, 1.0)
            self.queued[i] = self.queued[i][1:]
            self.experts[i].act(self.current[i])  # the tracking expert follows the episode step by step
            obs_i, _, terminated, truncated, info = self.shadows[i].step(actions[i])
            self.current[i], self.current_info[i] = obs_i, info
            self.history[i].append(obs_i["image"])
            self.ended[i] = terminated or truncated
        return actions

    def plan(self, need: list[int]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for env in self.shadows:
            env.close()

    # -- shadows ------------------------------------------------------------------------------------

    def _start_episode(self, i: int, seed: int | None) -> None:
        self.current[i], self.current_info[i] = self.shadows[i].reset(seed=seed)
        self.experts[i].reset()
        self.ended[i] = False
        self.queued[i] = np.zeros((0, ACTION_DIM), np.float32)
        self.history[i].extend([self.current[i]["image"]] * self.history[i].maxlen)

    def _check_lock_step(self, i: int, image: np.ndarray) -> None:
        if np.array_equal(self.current[i]["image"], image):
            return
        if self.current[i]["image"].shape != image.shape:
            cameras = ",".join(self.shadows[i].cameras)
            raise ValueError(f"{type(self).__name__} plans for {self.current[i]['image'].shape} images (cameras "
                             f"{cameras}), the scored environments render {image.shape}: "
                             f"score with --cameras {cameras}")
        self.mismatches += 1
        if not self._warned:
            self._warned = True
            diff = np.abs(self.current[i]["image"].astype(int) - image.astype(int)).max()
            logger.warning(
                "%s: the shadow of environment %d no longer matches the real one (max pixel difference "
                "%d, episode seed scheme seed_start + n * num_envs + i with seed_start=%d, num_envs=%d). The "
                "state cannot be re-synced from an image: the oracle now plans from the shadow's state, "
                "so its score is no longer the oracle's.", type(self).__name__, i, diff, self.seed, self.num_envs)

    def _expert_rollout(self, i: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The frames (steps, H, W, 3) uint8 and actions (steps, 4) of the scripted expert run ``steps``
        steps from the shadow's exact state, which is then restored."""
        env, snapshot = self.shadows[i], self._snapshot(i)
        expert, obs, frames, actions = copy.deepcopy(self.experts[i]), self.current[i], [], []
        try:
            for _ in range(steps):
                # float32, as the expert policy hands its actions to the vector environment
                actions.append(np.clip(expert.act(obs), -1.0, 1.0).astype(np.float32))
                obs, *_ = env.step(actions[-1])  # past the episode's end too: the frames are all we keep
                frames.append(obs["image"])
        finally:
            self._restore(i, snapshot)
        return np.stack(frames), np.stack(actions)

    def _snapshot(self, i: int) -> tuple:
        env = self.shadows[i]
        return copy.copy(env.data), env._steps, env._progress, list(env._caption_choice)

    def _restore(self, i: int, snapshot: tuple) -> None:
        env = self.shadows[i]
        data, env._steps, env._progress, env._caption_choice = snapshot
        mujoco.mj_copyData(env.data, env.model, data)


ACTION_COMPONENTS = ("x", "y", "z", "gripper")  # the order of an action's columns


def action_columns(components: str | list[str]) -> list[int]:
    """``"y,gripper"`` (or ``["y", "gripper"]``, as ``--policy-option`` parses a JSON list) -> [1, 3], the
    action columns of those component names."""
    names = [str(c).strip() for c in (components.split(",") if isinstance(components, str) else components)]
    names = [c for c in names if c]
    unknown = [c for c in names if c not in ACTION_COMPONENTS]
    if unknown:
        raise ValueError(f"expert_components: unknown {unknown}; choose among {', '.join(ACTION_COMPONENTS)}")
    return sorted({ACTION_COMPONENTS.index(c) for c in names})


def with_expert_components(actions: np.ndarray, expert_actions: np.ndarray, columns: list[int]) -> np.ndarray:
    """(N, 4) ``actions`` with the given columns taken from the first N ``expert_actions``."""
    actions = np.array(actions, copy=True)
    actions[:, columns] = expert_actions[: len(actions), columns]
    return actions


class OracleVideoPolicy(ShadowedPolicy):
    """The IDM on the scripted expert's true next K frames (see the module docstring). The frames show
    the IDM's ``cameras``: score an IDM of several views with ``vans-sim score --cameras`` set to them.

    Args:
        task (`str`): the vans_sim task.
        num_envs (`int`): environments stepped together.
        seed (`int`, defaults to 0): the scorer's ``seed_start``; shadow environments are reset with
            ``seed + n * num_envs + i`` at the n-th reset of environment ``i``.
        model (`str`): a planner checkpoint folder (its ``idm/`` and its ``planner.future_frames``) or an
            IDM folder (``config.json`` + weights, e.g. ``runs/idm/final``).
        future_frames (`int`, *optional*): K, only for a bare IDM folder; defaults to 8.
        replan_every (`int`, *optional*): steps between oracle plans, in [1, K]; by default K // 2, as the
            planner policy.
        split (`str`, defaults to `"heldout"`): split of the scored environments (the shadows must match).
        image_size (`int`, defaults to 64): image size of the scored environments.
        max_episode_steps (`int`, *optional*): the scored environments' horizon; the task's own by default.
        render_shadows (`bool`, defaults to `False`): the scored environments render shadows, as
            :class:`ShadowedPolicy`.
        backend (`str`, defaults to `"torch"`): only ``"torch"``: the IDM runs in PyTorch.
        device (`str`, defaults to `"cpu"`): torch device of the IDM.
        motion_gain (`float`, defaults to 1): factor on the IDM's dx, dy, dz, as ``PlannerConfig.motion_gain``
            (a planner checkpoint's own gain is not applied unless given here).
        expert_components (`str`, defaults to `""`): comma-separated action components (``x``, ``y``, ``z``,
            ``gripper``) taken from the expert's actions that made the frames instead of the IDM's, after
            the gain: the closed loop of an IDM that were perfect on those components.
    """

    def __init__(self, task: str, num_envs: int, seed: int = 0, model: str | None = None,
                 future_frames: int | None = None, replan_every: int | None = None, split: str = "heldout",
                 image_size: int = 64, max_episode_steps: int | None = None, render_shadows: bool = False,
                 backend: str = "torch", device: str = "cpu", motion_gain: float = 1.0,
                 expert_components: str | list[str] = ""):
        from vans_engine.planner import check_motion_gain  # imported here, as in load_idm
        from vans_engine.policy import check_replan_every

        if model is None:
            raise ValueError("the oracle-video policy needs --model DIR (a planner checkpoint or an IDM folder)")
        if backend != "torch":
            raise ValueError(f"the oracle-video policy runs its IDM in PyTorch: backend must be 'torch', got {backend!r}")
        # 1. the IDM
        self.device = torch.device(device)
        self.idm, self.future_frames = load_idm(model, future_frames)
        self.idm.to(self.device)
        # 2. one shadow environment, rendering the IDM's cameras, and one tracking expert per scored environment
        super().__init__(task, num_envs, seed, split, image_size, max_episode_steps, render_shadows=render_shadows,
                         cameras=tuple(self.idm.config.cameras))
        if self.idm.config.image_size != image_size:
            raise ValueError(f"the IDM in {model} takes {self.idm.config.image_size}-pixel images, "
                             f"the environments render {image_size}")
        self.replan_every = check_replan_every(replan_every, self.future_frames)
        self.motion_gain = check_motion_gain(motion_gain)
        self.expert_columns = action_columns(expert_components)
        self.last_future_frames: list[np.ndarray | None] = [None] * num_envs  # the latest oracle video
        self.last_expert_actions: list[np.ndarray | None] = [None] * num_envs  # the actions that made it

    def plan(self, need: list[int]) -> None:
        from vans_engine.planner import scale_motion  # imported here, as in load_idm

        clips = np.stack([np.concatenate([self.current[i]["image"][None], self._expert_future(i)]) for i in need])
        states = torch.from_numpy(np.stack([proprioception(self.current[i]) for i in need])).to(self.device)
        chunks = self.idm.predict_action_chunk(frames_to_tensor(clips).to(self.device), states).float().cpu().numpy()
        for i, clip, chunk in zip(need, clips, chunks):
            self.last_future_frames[i] = clip[1:]
            self.queued[i] = with_expert_components(scale_motion(chunk[: self.replan_every], self.motion_gain),
                                                    self.last_expert_actions[i], self.expert_columns)

    def _expert_future(self, i: int) -> np.ndarray:
        """(K, H, W, 3) uint8: the frames the scripted expert produces from the shadow's exact state."""
        frames, self.last_expert_actions[i] = self._expert_rollout(i, self.future_frames)
        return frames


class OracleCaptionPolicy(ShadowedPolicy):
    """The planner told the true caption of the event in progress (see the module docstring): its VDM
    and IDM plan as ``PlannerPolicy`` would, with the VLM left out. With ``vlm_captions`` the VLM writes
    the captions as in ``PlannerPolicy``, and ``expert_components`` then measures the whole planner with
    some of its action components made perfect.

    Args:
        task (`str`), num_envs (`int`), seed (`int`, defaults to 0), split (`str`, defaults to
            `"heldout"`), image_size (`int`, defaults to 64), max_episode_steps (`int`, *optional*): as
            for :class:`OracleVideoPolicy`. ``seed`` also seeds the first plan's noise, later plans the
            following seeds, as ``PlannerPolicy``.
        render_shadows (`bool`, defaults to `False`): as for :class:`OracleVideoPolicy`.
        model (`str`): planner checkpoint folder.
        backend (`str`, defaults to `"onnxruntime"`), device (`str`, defaults to `"cpu"`): the planner's.
        replan_every (`int`, *optional*): steps between plans, in [1, K]; by default K // 2.
        steps (`int`, *optional*): denoising steps; the checkpoint's default otherwise.
        vlm_captions (`bool`, defaults to `False`): plan with the VLM's captions instead of the true one.
        expert_components (`str` or `list[str]`, defaults to `""`): as for :class:`OracleVideoPolicy`: these
            components of each planned action are the expert's, from the shadow's exact state.
    """

    def __init__(self, task: str, num_envs: int, seed: int = 0, model: str | None = None,
                 backend: str = "onnxruntime", device: str = "cpu", replan_every: int | None = None,
                 steps: int | None = None, split: str = "heldout", image_size: int = 64,
                 max_episode_steps: int | None = None, render_shadows: bool = False, vlm_captions: bool = False,
                 expert_components: str | list[str] = ""):
        from vans_engine.planner import Planner
        from vans_engine.policy import check_replan_every

        if model is None:
            raise ValueError("the oracle-caption policy needs --model DIR (a planner checkpoint)")
        self.planner = Planner.from_pretrained(model, backend=backend, device=device)
        if self.planner.config.image_size != image_size:
            raise ValueError(f"the planner in {model} takes {self.planner.config.image_size}-pixel images, "
                             f"the environments render {image_size}")
        self.replan_every = check_replan_every(replan_every, self.planner.config.future_frames)
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps, self.plan_seed = steps, int(seed)
        self.vlm_captions, self.expert_columns = bool(vlm_captions), action_columns(expert_components)
        self.last_captions: list[str | None] = [None] * num_envs  # the caption of each environment's last plan
        # the context clip is the shadow's last frames: as PlannerPolicy, the first frame pads a young episode
        super().__init__(task, num_envs, seed, split, image_size, max_episode_steps,
                         history=self.planner.config.context_frames, render_shadows=render_shadows,
                         cameras=self.planner.config.cameras)

    def plan(self, need: list[int]) -> None:
        captions = None if self.vlm_captions else [self.current_info[i]["caption"] for i in need]
        plans = self.planner.plan_batch(np.stack([np.stack(list(self.history[i])) for i in need]),
                                        [self.shadows[i].instruction for i in need], steps=self.steps,
                                        seed=self.plan_seed, captions=captions,
                                        states=np.stack([proprioception(self.current[i]) for i in need]))
        self.plan_seed += 1
        for i, plan in zip(need, plans):
            actions = plan.actions[: self.replan_every]
            if self.expert_columns:
                _, expert_actions = self._expert_rollout(i, len(actions))
                actions = with_expert_components(actions, expert_actions, self.expert_columns)
            self.queued[i] = actions
            self.last_captions[i] = plan.caption

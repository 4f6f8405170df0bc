"""The oracle-video policy: the IDM on the true future, the upper bound of video-as-answer planning.

The planner answers "what happens next?" with a generated video and turns it into actions with the
inverse-dynamics model (IDM). This policy replaces the generated video with the ground truth: the K
frames the scripted expert would produce from the exact current state. Its success rate is what the
planner would reach with a perfect VLM and a perfect VDM, so it bounds the planner from above and
measures the IDM alone.

    vans-sim score --policy oracle-video --model runs/idm/final --tasks single --episodes 20 --out runs/oracle

How it stays exact, without any state estimation: the policy keeps one *shadow* ``RoboDeskEnv`` per
vector environment, made with the same task, split and image size, reset with the same seed as the
real environment and stepped with exactly the actions the policy returns. The simulator is
deterministic, so the shadow stays in lock-step with the real environment (checked at every step:
the shadow's image must equal ``obs["image"]`` bit for bit). Every ``replan_every`` steps it

1. snapshots the shadow's full state (a copy of MuJoCo's ``MjData`` plus the environment's step count
   and event progress) and a copy of the expert that has been tracking the episode,
2. rolls that expert K steps forward in the shadow, rendering the K frames,
3. restores the snapshot, and
4. runs the IDM on the current frame plus those K frames and queues its first ``replan_every`` actions.

Seeds follow ``vans-sim score``: the n-th :meth:`OracleVideoPolicy.reset` of environment ``i`` is
episode ``seed + n * num_envs + i``. Vector environments auto-reset in ``NEXT_STEP`` mode: after an
episode ends, the next action is ignored and the environment resets without a seed (continuing its
generator); the shadow does the same.
"""

from __future__ import annotations

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
    """An IDM and its K from a planner checkpoint folder (``idm/`` inside) or an IDM folder.

    Returns ``(idm, future_frames)``. A planner checkpoint's ``model_index.json`` fixes K
    (``planner.future_frames``); for a bare IDM folder K is ``future_frames`` (8 when not given).
    """
    from vans_engine.models.idm import InverseDynamicsModel

    folder = Path(model)
    if (folder / "model_index.json").is_file():
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
    return InverseDynamicsModel.from_pretrained(folder).eval(), k


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, N, H, W, 3) uint8 -> (B, N, 3, H, W) float in [-1, 1], as the planner feeds its IDM."""
    return torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0


class OracleVideoPolicy:
    """The IDM on the scripted expert's true next K frames (see the module docstring).

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
        backend (`str`, defaults to `"torch"`): only ``"torch"``: the IDM runs in PyTorch.
        device (`str`, defaults to `"cpu"`): torch device of the IDM.
    """

    needs_image = True

    def __init__(self, task: str, num_envs: int, seed: int = 0, model: str | None = None,
                 future_frames: int | None = None, replan_every: int | None = None, split: str = "heldout",
                 image_size: int = 64, max_episode_steps: int | None = None, backend: str = "torch",
                 device: str = "cpu"):
        # 1. check the options
        if model is None:
            raise ValueError("the oracle-video policy needs --model DIR (a planner checkpoint or an IDM folder)")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size!r}")
        if backend != "torch":
            raise ValueError(f"the oracle-video policy runs its IDM in PyTorch: backend must be 'torch', got {backend!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        # 2. the IDM
        self.device = torch.device(device)
        self.idm, self.future_frames = load_idm(model, future_frames)
        self.idm.to(self.device)
        if self.idm.config.image_size != image_size:
            raise ValueError(f"the IDM in {model} takes {self.idm.config.image_size}-pixel images, "
                             f"the environments render {image_size}")
        self.replan_every = replan_every or max(1, self.future_frames // 2)
        if not 1 <= self.replan_every <= self.future_frames:
            raise ValueError(f"replan_every must be in [1, {self.future_frames}], got {self.replan_every}")
        # 3. one shadow environment and one tracking expert per scored environment
        self.task, self.num_envs, self.seed = task, num_envs, int(seed)
        self.shadows = [RoboDeskEnv(task=task, image_size=image_size, split=split, observe_image=True,
                                    max_episode_steps=max_episode_steps) for _ in range(num_envs)]
        self.experts = [ScriptedExpert(task) for _ in range(num_envs)]
        self.resets = np.zeros(num_envs, int)  # resets seen per environment, for the seed scheme
        self.current: list[dict | None] = [None] * num_envs  # the shadow's latest observation
        self.ended = np.zeros(num_envs, bool)  # the shadow's episode ended: the next action is ignored
        self.queued = [np.zeros((0, ACTION_DIM), np.float32) for _ in range(num_envs)]
        self.last_future_frames: list[np.ndarray | None] = [None] * num_envs  # the latest oracle video
        self.last_expert_actions: list[np.ndarray | None] = [None] * num_envs  # the actions that made it
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
        # 2. oracle plans for the environments whose queue ran out
        need = [i for i in range(self.num_envs) if not self.ended[i] and len(self.queued[i]) == 0]
        if need:
            clips = np.stack([np.concatenate([self.current[i]["image"][None], self._expert_future(i)]) for i in need])
            states = torch.from_numpy(np.stack([proprioception(self.current[i]) for i in need])).to(self.device)
            chunks = self.idm.predict_action_chunk(frames_to_tensor(clips).to(self.device), states).float().cpu().numpy()
            for i, clip, chunk in zip(need, clips, chunks):
                self.last_future_frames[i] = clip[1:]
                self.queued[i] = chunk[: self.replan_every]
        # 3. this step's actions; the shadows take exactly the same ones
        actions = np.zeros((self.num_envs, ACTION_DIM), np.float32)
        for i in range(self.num_envs):
            if self.ended[i]:  # the real environment ignores this action and resets without a seed
                self._start_episode(i, None)
                continue
            actions[i] = np.clip(self.queued[i][0], -1.0, 1.0)
            self.queued[i] = self.queued[i][1:]
            self.experts[i].act(self.current[i])  # the tracking expert follows the episode step by step
            obs_i, _, terminated, truncated, _ = self.shadows[i].step(actions[i])
            self.current[i] = obs_i
            self.ended[i] = terminated or truncated
        return actions

    def close(self) -> None:
        for env in self.shadows:
            env.close()

    # -- shadows ------------------------------------------------------------------------------------

    def _start_episode(self, i: int, seed: int | None) -> None:
        self.current[i], _ = self.shadows[i].reset(seed=seed)
        self.experts[i].reset()
        self.ended[i] = False
        self.queued[i] = np.zeros((0, ACTION_DIM), np.float32)

    def _check_lock_step(self, i: int, image: np.ndarray) -> None:
        if np.array_equal(self.current[i]["image"], image):
            return
        self.mismatches += 1
        if not self._warned:
            self._warned = True
            diff = np.abs(self.current[i]["image"].astype(int) - image.astype(int)).max()
            logger.warning(
                "oracle-video: the shadow of environment %d no longer matches the real one (max pixel difference "
                "%d, episode seed scheme seed_start + n * num_envs + i with seed_start=%d, num_envs=%d). The "
                "state cannot be re-synced from an image: the oracle now plans from the shadow's state, "
                "so its score is no longer the oracle's.", i, diff, self.seed, self.num_envs)

    def _snapshot(self, i: int) -> tuple:
        env = self.shadows[i]
        return copy.copy(env.data), env._steps, env._progress, list(env._caption_choice)

    def _restore(self, i: int, snapshot: tuple) -> None:
        env = self.shadows[i]
        data, env._steps, env._progress, env._caption_choice = snapshot
        mujoco.mj_copyData(env.data, env.model, data)

    def _expert_future(self, i: int) -> np.ndarray:
        """(K, H, W, 3) uint8: the frames the scripted expert produces from the shadow's exact state."""
        env, snapshot = self.shadows[i], self._snapshot(i)
        expert, obs, frames, actions = copy.deepcopy(self.experts[i]), self.current[i], [], []
        try:
            for _ in range(self.future_frames):
                # float32, as the expert policy hands its actions to the vector environment
                actions.append(np.clip(expert.act(obs), -1.0, 1.0).astype(np.float32))
                obs, *_ = env.step(actions[-1])  # past the episode's end too: the frames are all we keep
                frames.append(obs["image"])
        finally:
            self._restore(i, snapshot)
        self.last_expert_actions[i] = np.stack(actions)
        return np.stack(frames)

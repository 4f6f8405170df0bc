"""The planner as a ``vans_sim`` policy, so that ``vans-sim score --policy planner`` scores it.

Each environment keeps its last ``context_frames`` camera frames. Every ``replan_every`` steps the
planner plans for all environments at once (one batched call) and each environment then runs the
first actions of its plan. With ``latency_steps`` L the plan made on step s's frame arrives L steps
later, as over ROS 2 where the robot keeps moving while the planner thinks: the previous plan runs on
until then, and the new one starts at its action L, the one due at step s + L (as the ``sim_camera``
node's ``skip_late_actions`` does).

    vans-sim score --policy planner --model models/vans-desk-64 --backend onnxruntime --tasks single --out runs/planner
"""

from __future__ import annotations

import numpy as np

from vans_engine.planner import Planner


def check_replan_every(replan_every: int | None, future_frames: int) -> int:
    """``replan_every`` (half the K predicted frames when not given), checked to be in [1, K]."""
    replan_every = replan_every or max(1, future_frames // 2)
    if not 1 <= replan_every <= future_frames:
        raise ValueError(f"replan_every must be in [1, {future_frames}], got {replan_every}")
    return replan_every


class PlannerPolicy:
    """Args:
        task (`str`): the vans_sim task; its instruction is what the planner is told.
        num_envs (`int`): environments stepped together.
        seed (`int`): seed of the first plan; later plans use the following seeds.
        model (`str`): checkpoint folder.
        backend (`str`, defaults to `"onnxruntime"`), device (`str`, defaults to `"cpu"`).
        replan_every (`int`, *optional*): steps between plans; by default half the predicted frames.
        steps (`int`, *optional*): denoising steps; the checkpoint's default otherwise.
        reuse_caption (`int`, defaults to 0): plans that reuse the previous plan's caption before the
            VLM is asked again. Captions change once per event, several plans apart; reusing one skips
            the slowest stage on a GPU. 0 asks the VLM at every plan.
        latency_steps (`int`, defaults to 0): steps between the frame a plan is made on and the step its
            actions start; the tool holds still before an episode's first plan arrives. In [0, K -
            replan_every], so that every plan still has ``replan_every`` actions to run.
    """

    needs_image = True

    def __init__(self, task: str, num_envs: int, seed: int = 0, model: str | None = None,
                 backend: str = "onnxruntime", device: str = "cpu", replan_every: int | None = None,
                 steps: int | None = None, reuse_caption: int = 0, latency_steps: int = 0):
        from vans_sim.env import proprioception
        from vans_sim.tasks import get_task

        if model is None:
            raise ValueError("the planner policy needs --model DIR")
        self.planner = Planner.from_pretrained(model, backend=backend, device=device)
        self.instruction = get_task(task).instruction
        self.proprioception = proprioception  # the IDM's state from an observation
        self.num_envs = num_envs
        self.context_frames = self.planner.config.context_frames
        self.replan_every = check_replan_every(replan_every, self.planner.config.future_frames)
        if reuse_caption < 0:
            raise ValueError(f"reuse_caption must be >= 0, got {reuse_caption}")
        future_frames = self.planner.config.future_frames
        if not 0 <= latency_steps <= future_frames - self.replan_every:
            raise ValueError(f"latency_steps must be in [0, {future_frames - self.replan_every}] (future frames "
                             f"{future_frames} - replan_every {self.replan_every}), got {latency_steps}")
        self.latency_steps = latency_steps
        self.steps = steps
        self.seed = seed
        self.reuse_caption = reuse_caption
        self.captions: list[str | None] = [None] * num_envs
        self.caption_age = [0] * num_envs
        self.history: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.queued: list[np.ndarray] = [np.zeros((0, 4), np.float32) for _ in range(num_envs)]
        self.episode_steps = [0] * num_envs
        # per environment: plans made but not yet arrived, as (episode step they arrive at, their actions)
        self.in_flight: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(num_envs)]
        self.gripper = np.full(num_envs, -1.0, np.float32)  # held while no plan runs; every episode starts open

    def reset(self, env_ids: np.ndarray) -> None:
        for i in env_ids:
            self.history[i] = []
            self.queued[i] = np.zeros((0, 4), np.float32)
            self.captions[i] = None
            self.episode_steps[i] = 0
            self.in_flight[i] = []
            self.gripper[i] = -1.0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        height, width = self.planner.config.frame_size
        if obs["image"].shape[1:3] != (height, width):
            cameras = ",".join(self.planner.config.cameras)
            raise ValueError(f"the planner plans from {height}x{width} images (cameras {cameras}), the scored "
                             f"environments render {obs['image'].shape[1]}x{obs['image'].shape[2]}: score with "
                             f"--image-size {self.planner.config.image_size} --cameras {cameras}")
        for i in range(self.num_envs):
            frames = self.history[i]
            if not frames:  # a new episode: the first frame stands in for the missing context
                frames.extend([obs["image"][i]] * self.context_frames)
            else:
                frames.append(obs["image"][i])
                del frames[:-self.context_frames]
        need = [i for i in range(self.num_envs) if self.episode_steps[i] % self.replan_every == 0]
        # Environments whose caption is fresh enough reuse it; the others ask the VLM.
        reuse = [i for i in need if self.captions[i] is not None and self.caption_age[i] < self.reuse_caption]
        ask = [i for i in need if i not in reuse]
        for group, captions in ((ask, None), (reuse, [self.captions[i] for i in reuse])):
            if not group:
                continue
            plans = self.planner.plan_batch(np.stack([np.stack(self.history[i]) for i in group]),
                                            [self.instruction] * len(group), steps=self.steps, seed=self.seed,
                                            captions=captions, states=self.proprioception(obs)[group])
            self.seed += 1
            for i, plan in zip(group, plans):
                late = self.latency_steps
                self.in_flight[i].append((self.episode_steps[i] + late, plan.actions[late:late + self.replan_every]))
                self.caption_age[i] = 0 if captions is None else self.caption_age[i] + 1
                self.captions[i] = plan.caption
        actions = np.zeros((self.num_envs, 4), np.float32)
        for i in range(self.num_envs):
            while self.in_flight[i] and self.in_flight[i][0][0] <= self.episode_steps[i]:
                self.queued[i] = self.in_flight[i].pop(0)[1]  # an arriving plan replaces what is left of the last
            if len(self.queued[i]):
                actions[i], self.queued[i] = self.queued[i][0], self.queued[i][1:]
                self.gripper[i] = actions[i, 3]
            else:  # no plan has arrived yet: hold still, as the sim_camera node does
                actions[i, 3] = self.gripper[i]
            self.episode_steps[i] += 1
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

"""The sim-grounded reward of Joint-GRPO: do the planner's actions make the predicted event happen?

The planner answers "what happens next?" with K frames and the inverse-dynamics model turns them into K
actions. This reward runs those actions in the simulator from the sample's exact state and scores
what they do there, so a video earns it only by being one a robot can follow:

* ``1.0`` when the event in progress at the anchor step ``t`` (the sample's ``events`` entry) is
  reached within the K steps, i.e. the environment's latched event progress moves past it;
* otherwise ``partial_credit * closeness``, in ``[0, partial_credit)``, with::

      closeness = exp(-|ee - ee*| / ee_scale - |g - g*| / gripper_scale - |desk - desk*| / object_scale)

  where ``*`` is the state the recorded expert reached after the same number of steps ``k =
  min(K, n - t)`` (``n`` the episode's length), ``ee`` the tool point (metres), ``g`` the finger opening
  in [0, 1] and ``desk`` the desk's movable parts (the three objects' positions, the drawer and slide
  openings and the three buttons' travel, metres), so the term also covers the object a task moves.
  The actions past ``k`` still count for reaching the event.

Anchors recorded after the task was already done (the few settling steps at an episode's end) have
no event left: every chunk is reached there and scores 1.0, which leaves a GRPO group's advantages at
zero. ``SimRewardOutput.already_reached`` marks them.

How the state is restored. The simulator is deterministic, so resetting an environment of the
episode's task and scene split with the episode's seed and replaying the recorded actions ``0..t-1``
lands exactly on the recorded state at ``t`` (the dataset's frame ``t`` is the observation before
action ``t``): the replayed tool point, gripper and event must equal the recorded ones, which is
checked on every replay, and :meth:`SimGroundedReward.check_replay` also renders the state and compares
it with the recorded frame bit for bit. The state is then kept as MuJoCo's integration state
(``mj_getState(mjSTATE_INTEGRATION)``, about 200 numbers, while a copy of ``MjData`` holds a 14 MiB arena)
plus the environment's step count and event progress, in a bounded LRU cache, so the G chunks of a
sample and later calls restore it with one ``mj_setState`` instead of a replay. Chunks run without
rendering (``observe_image=False``).

Measured on 64 anchors of ``data/train``'s valid split (``NextEventData("data/train", "valid")``,
``fixed_indices(64)``, K = 8, defaults below; noisy and random chunks 8 per anchor from
``np.random.default_rng(0)``, noise clipped to [-1, 1]):

=======================================  ============  =========  ======================================
actions                                  mean reward   reached    mean reward of the chunks not reaching
=======================================  ============  =========  ======================================
recorded expert (``batch.actions``)      0.812         62.5 %     0.500 (closeness 1)
expert + N(0, 0.1) noise                 0.744         58.8 %     0.379
expert + N(0, 0.3) noise                 0.612         49.6 %     0.231
zero                                     0.170         15.6 %     0.017
uniform random in [-1, 1]                0.189         18.0 %     0.011
=======================================  ============  =========  ======================================

6.25 % of these anchors are already reached. Zero actions keep the tool still and half-open the
fingers (gripper action 0), so they reach only events the tool is already on (a press under way, a
grasp closing). The scales come from the distances of those chunks to the expert's end state
(medians: tool 0.117 m for zero and 0.125 m for random chunks, finger opening 0.50 and 0.40, desk
parts 0 with a 90th percentile of 0.16-0.18 m; expert + N(0, 0.3): tool 0.027 m): ``ee_scale =
object_scale = 0.05`` m gives a chunk that ends 2 cm from the expert 0.67 of the partial credit and a
still or random one almost nothing; ``gripper_scale = 0.5`` is looser because the fingers lag their
command, so a gripper half open where the expert's is open (0.5) alone costs a factor e.

Cost, on the shared 2-core development machine: 3-4.5 ms per chunk of 8 steps (about 0.5 ms a step,
no rendering); a cache miss adds the replay, about 20 ms at a mean anchor (64 new anchors: 1.4 s).
A GRPO step of 8 cached samples x 8 chunks costs about 0.25 s.

>>> from vans_training.data import NextEventData
>>> from vans_training.sim_reward import SimGroundedReward
>>> data = NextEventData("data/train", "valid")
>>> reward = SimGroundedReward(data)
>>> indices = data.fixed_indices(4)
>>> out = reward(indices, data.batch(indices).actions[:, None])  # (B, G=1, K, 4)
>>> out.rewards.shape
(4, 1)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import mujoco
import numpy as np
from vans_sim.env import ACTION_DIM, RoboDeskEnv
from vans_sim.state import OBJECT_STATE_LAYOUT

from vans_training.data import NextEventData

# MuJoCo's state that mj_step reads (time, qpos, qvel, act, warm start, controls, applied forces): enough
# to continue a simulation bit for bit, unlike qpos/qvel alone.
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION

# Entries of ``obs["object_state"]`` that say where the desk's movable parts are (quaternions left out).
_DESK_INDEX = np.concatenate([np.arange(*OBJECT_STATE_LAYOUT[name]) for name in (
    "upright_block_pos", "flat_block_pos", "ball_pos", "drawer", "slide", "button_red", "button_green",
    "button_blue")])


@dataclass
class SimRewardOutput:
    """Rewards of G action chunks for each of B anchors, with the terms they are made of.

    Args:
        rewards (`np.ndarray`): (B, G) float32 in [0, 1].
        reached (`np.ndarray`): (B, G) bool, the anchor's event was reached within the K steps.
        closeness (`np.ndarray`): (B, G) float32 in [0, 1], 1 at the recorded expert's end state.
        ee_distance (`np.ndarray`): (B, G) float32, metres from the expert's tool point after k steps.
        gripper_distance (`np.ndarray`): (B, G) float32, difference of finger opening (in [0, 1]).
        object_distance (`np.ndarray`): (B, G) float32, metres from the expert's desk parts.
        expert_reached (`np.ndarray`): (B,) bool, the recorded actions reach the event within the K steps.
        already_reached (`np.ndarray`): (B,) bool, the task was done at the anchor (every chunk scores 1).
        events (`list[str]`): the anchors' events.
    """

    rewards: np.ndarray
    reached: np.ndarray
    closeness: np.ndarray
    ee_distance: np.ndarray
    gripper_distance: np.ndarray
    object_distance: np.ndarray
    expert_reached: np.ndarray
    already_reached: np.ndarray
    events: list[str]


@dataclass
class _Anchor:
    """An anchor's restored state and the recorded expert's path from it."""

    env: RoboDeskEnv
    physics: np.ndarray  # MuJoCo integration state at t
    steps: int  # the environment's step count at t
    progress: int  # events latched at t
    event_index: int  # the event in progress at t
    expert_features: np.ndarray  # (k_max, 18): tool point, finger opening, desk parts after each recorded step
    expert_progress: np.ndarray  # (k_max,) events latched after each recorded step; k_max = min(K, n - t)


def _features(obs: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([obs["ee_pos"], obs["gripper"], obs["object_state"][_DESK_INDEX]]).astype(np.float64)


class SimGroundedReward:
    """Scores action chunks by running them in the simulator from each sample's recorded state.

    Args:
        data (`NextEventData`):
            the samples; anchors are positions in ``data.anchors``.
        ee_scale (`float`, *optional*, defaults to 0.05):
            metres of tool-point distance to the expert's end state that divide the closeness by e.
        gripper_scale (`float`, *optional*, defaults to 0.5):
            finger-opening difference (in [0, 1]) that divides the closeness by e.
        object_scale (`float`, *optional*, defaults to 0.05):
            metres of desk-part distance (objects, drawer, slide, buttons) that divide the closeness by e.
        partial_credit (`float`, *optional*, defaults to 0.5):
            the reward of a chunk that ends on the expert's state without reaching the event; must be
            in [0, 1) so that reaching the event always scores more.
        cache_size (`int`, *optional*, defaults to 16384):
            anchors whose restored state is kept (least recently used dropped first); about 3 KiB each.
    """

    def __init__(self, data: NextEventData, ee_scale: float = 0.05, gripper_scale: float = 0.5,
                 object_scale: float = 0.05, partial_credit: float = 0.5, cache_size: int = 16384):
        if min(ee_scale, gripper_scale, object_scale) <= 0:
            raise ValueError(f"ee_scale, gripper_scale and object_scale must be > 0, got "
                             f"{ee_scale}, {gripper_scale}, {object_scale}")
        if not 0 <= partial_credit < 1:
            raise ValueError(f"partial_credit must be in [0, 1), got {partial_credit}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.data = data
        self.scales = np.asarray([ee_scale, gripper_scale, object_scale])
        self.partial_credit = float(partial_credit)
        self.cache_size = int(cache_size)
        self.num_replays = 0  # anchors restored by a replay, i.e. cache misses
        self._cache: OrderedDict[int, _Anchor] = OrderedDict()
        self._envs: dict[tuple[str, str], RoboDeskEnv] = {}

    # -- public API ----------------------------------------------------------------------------------

    def __call__(self, indices: np.ndarray, action_chunks: np.ndarray) -> SimRewardOutput:
        """Run every chunk from its anchor's state and score it.

        Args:
            indices (`np.ndarray`):
                (B,) integer positions in ``data.anchors``.
            action_chunks (`np.ndarray`):
                (B, G, K, 4) actions, G candidate chunks per anchor, 1 <= K <= ``data.future_frames``;
                clipped to [-1, 1] before they are run.

        Returns:
            [`SimRewardOutput`]: rewards (B, G) in [0, 1] and their terms.
        """
        # 1. check inputs
        indices, action_chunks = self.check_inputs(indices, action_chunks)
        batch, group, horizon = action_chunks.shape[:3]
        chunks = np.clip(action_chunks, -1.0, 1.0)
        reached = np.zeros((batch, group), bool)
        distances = np.zeros((batch, group, 3))
        expert_reached, already_reached, events = np.zeros(batch, bool), np.zeros(batch, bool), []
        for b, index in enumerate(indices):
            # 2. the anchor's state, replayed once and cached
            anchor = self._anchor(int(index))
            env, task_events = anchor.env, anchor.env.task.events
            k = min(horizon, len(anchor.expert_features))
            expert_end = anchor.expert_features[k - 1]
            expert_reached[b] = anchor.expert_progress[k - 1] > anchor.event_index
            already_reached[b] = anchor.progress > anchor.event_index
            events.append(task_events[anchor.event_index].name)
            # 3. each chunk from that state
            for g in range(group):
                self._restore(anchor)
                for step, action in enumerate(chunks[b, g]):
                    obs, *_ = env.step(action)
                    if step + 1 == k:
                        end = _features(obs)
                reached[b, g] = env._progress > anchor.event_index
                distances[b, g] = (np.linalg.norm(end[:3] - expert_end[:3]), abs(end[3] - expert_end[3]),
                                   np.linalg.norm(end[4:] - expert_end[4:]))
        # 4. score: the event, else how close the chunk ends to the expert
        closeness = np.exp(-(distances / self.scales).sum(-1))
        rewards = np.where(reached, 1.0, self.partial_credit * closeness)
        f32 = np.float32
        return SimRewardOutput(
            rewards=rewards.astype(f32), reached=reached, closeness=closeness.astype(f32),
            ee_distance=distances[..., 0].astype(f32), gripper_distance=distances[..., 1].astype(f32),
            object_distance=distances[..., 2].astype(f32), expert_reached=expert_reached,
            already_reached=already_reached, events=events)

    def check_inputs(self, indices, action_chunks) -> tuple[np.ndarray, np.ndarray]:
        """Validate and convert ``indices`` (B,) and ``action_chunks`` (B, G, K, 4); raises `ValueError`."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices must be a 1-D integer array, got shape {indices.shape} dtype {indices.dtype}")
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self.data)):
            raise ValueError(f"indices must be in [0, {len(self.data)}), got min {indices.min()} max {indices.max()}")
        action_chunks = np.asarray(action_chunks, dtype=np.float64)
        shape = action_chunks.shape
        if (len(shape) != 4 or shape[0] != len(indices) or shape[1] < 1 or shape[3] != ACTION_DIM
                or not 1 <= shape[2] <= self.data.future_frames):
            raise ValueError(f"action_chunks must have shape (B={len(indices)}, G>=1, K in [1, "
                             f"{self.data.future_frames}], {ACTION_DIM}), got {shape}")
        finite = np.isfinite(action_chunks).all(axis=(2, 3))
        if not finite.all():
            bad = np.argwhere(~finite)[:5].tolist()
            raise ValueError(f"action_chunks contain NaN or inf at (sample, chunk) {bad}")
        return indices, action_chunks

    def check_replay(self, index: int) -> bool:
        """Whether the replayed state at anchor ``index`` renders exactly the recorded frame ``t``, and the
        recorded actions from the cached state render exactly the recorded frame ``t + k`` (where the
        episode has it). Needs an OpenGL backend (``MUJOCO_GL=egl`` offscreen)."""
        episode, t = (int(x) for x in self.data.anchors[index])
        start, length = int(self.data.starts[episode]), int(self.data.lengths[episode])
        anchor = self._anchor(index)
        env = anchor.env
        self._replay(episode, t)  # the cached state holds no render of its own: replay to draw frame t
        if not np.array_equal(env.render(), self.data.images[start + t]):
            return False
        k = min(self.data.future_frames, length - 1 - t)
        if k < 1:
            return True
        self._restore(anchor)
        for action in self.data.actions[start + t:start + t + k]:
            env.step(action)
        return np.array_equal(env.render(), self.data.images[start + t + k])

    # -- restoring anchors ---------------------------------------------------------------------------

    def _env(self, task: str, scene_split: str) -> RoboDeskEnv:
        # one environment per task (its events) and scene split (its initial states); all share one MJCF
        key = (task, scene_split)
        if key not in self._envs:
            self._envs[key] = RoboDeskEnv(task, image_size=self.data.image_size, split=scene_split,
                                          observe_image=False, render_mode="rgb_array", **self.data.scene_kwargs)
        return self._envs[key]

    def _replay(self, episode: int, t: int) -> tuple[RoboDeskEnv, dict]:
        """Reset the episode's environment with its seed and run its recorded actions ``0..t-1``."""
        env = self._env(self.data.tasks[episode], self.data.scene_splits[episode])
        obs, _ = env.reset(seed=int(self.data.seeds[episode]))
        start = int(self.data.starts[episode])
        for action in self.data.actions[start:start + t]:
            obs, *_ = env.step(action)
        return env, obs

    def _anchor(self, index: int) -> _Anchor:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        episode, t = (int(x) for x in self.data.anchors[index])
        start, length = int(self.data.starts[episode]), int(self.data.lengths[episode])
        env, obs = self._replay(episode, t)
        self.num_replays += 1
        # the replay must land on the recorded state; a different simulator build would not
        event_index = min(env._progress, len(env.task.events) - 1)
        state = np.concatenate([obs["ee_pos"], obs["gripper"]]).astype(np.float32)
        if (not np.array_equal(state, self.data.state[start + t])
                or env.task.events[event_index].name != self.data.event_names[start + t]):
            raise RuntimeError(f"replaying episode {episode} (task {env.task.name}, seed {self.data.seeds[episode]}) "
                               f"to step {t} did not reproduce the recorded state: tool point and gripper "
                               f"{state.tolist()} vs {self.data.state[start + t].tolist()}, event "
                               f"{env.task.events[event_index].name!r} vs {self.data.event_names[start + t]!r}; "
                               f"was {self.data.path} recorded with another simulator version?")
        physics = np.empty(mujoco.mj_stateSize(env.model, _STATE_SPEC))
        mujoco.mj_getState(env.model, env.data, physics, _STATE_SPEC)
        steps, progress = env._steps, env._progress
        # the recorded expert's path from t, for the closeness term and expert_reached
        features, expert_progress = [], []
        for action in self.data.actions[start + t:start + min(t + self.data.future_frames, length)]:
            obs, *_ = env.step(action)
            features.append(_features(obs))
            expert_progress.append(env._progress)
        anchor = _Anchor(env=env, physics=physics, steps=steps, progress=progress, event_index=event_index,
                         expert_features=np.stack(features), expert_progress=np.asarray(expert_progress))
        self._cache[index] = anchor
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return anchor

    @staticmethod
    def _restore(anchor: _Anchor) -> None:
        # RoboDeskEnv has no public snapshot API; as OracleVideoPolicy, set its counters alongside MuJoCo's state
        env = anchor.env
        mujoco.mj_setState(env.model, env.data, anchor.physics, _STATE_SPEC)
        env._steps, env._progress = anchor.steps, anchor.progress

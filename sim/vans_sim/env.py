"""``vans_sim/RoboDesk-v0``: a RoboDesk-style desk written directly on the MuJoCo bindings.

>>> import gymnasium as gym, vans_sim
>>> env = gym.make("vans_sim/RoboDesk-v0", task="push_red", image_size=64, split="train")
>>> obs, info = env.reset(seed=0)
>>> obs["image"].shape, info["caption"]
((64, 64, 3), 'the gripper moves above the red button')

Actions are end-effector deltas ``(dx, dy, dz, gripper)`` in ``[-1, 1]``: the three position
actuators of the gripper are sent to the current tool point plus ``EE_MAX_STEP`` metres times the
delta, and ``gripper`` = +1 closes the fingers, -1 opens them. One step is ``CONTROL_SUBSTEPS``
physics steps (``CONTROL_PERIOD`` seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from vans_sim import randomization, scene
from vans_sim.state import OBJECT_STATE_DIM, OBJECT_STATE_LAYOUT, DeskState
from vans_sim.tasks import Task, get_task

IMAGE_SIZES = (64, 128, 256)
ACTION_DIM = 4


def proprioception(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The robot's own state from an observation (single or batched): tool point x, y, z in metres
    and gripper opening in [0, 1], float32 ``(..., 4)``: what a planner's IDM may read, in the order
    the recorded datasets store it."""
    return np.concatenate([obs["ee_pos"], obs["gripper"]], axis=-1).astype(np.float32)


class RoboDeskEnv(gym.Env):
    """A desk with a sliding panel, a drawer, three buttons, two blocks, a ball, a bin and a shelf.

    Args:
        task (`str`, defaults to `"open_slide"`): one of :data:`vans_sim.tasks.TASKS`.
        image_size (`int`, defaults to 64): side of the square camera image, 64, 128 or 256.
            Rendered natively at that size.
        split (`str`, defaults to `"train"`): `"train"` or `"heldout"` initial-state ranges.
        split_overrides (`Mapping[str, str]`, *optional*): randomized quantities drawn from another
            split than ``split``, ``{quantity: split}`` with quantities from
            :data:`vans_sim.randomization.RANGES`: held-out desks with the train split's gripper start,
            for one, tell the start apart from the desk in a held-out failure.
        observe_image (`bool`, defaults to `True`): put the camera image in the observation. When
            False nothing is rendered unless :meth:`render` is called.
        max_episode_steps (`int`, *optional*): truncation horizon; the task's own by default.
        render_mode (`str`, *optional*): `"rgb_array"` or None.
        shadows (`bool`, defaults to `False`): the sun casts shadows onto the desk (see
            :func:`vans_sim.scene.build_mjcf`). A model sees the scene it was trained on: record, score
            and run a model with the setting its training data had (``env_kwargs`` of a recorded dataset).
        cameras (`Sequence[str]`, defaults to `("desk",)`): the views in the image, side by side in this
            order, each ``image_size`` square: ``"desk"`` (in front, looking down and back, as RoboDesk's)
            and ``"side"`` (at the desk's left end), whose image shows the desk camera's depth axis. The
            image is ``(image_size, image_size * len(cameras), 3)``; as with ``shadows``, a model is run
            with the cameras its training data had.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1 / scene.CONTROL_PERIOD))}

    def __init__(
        self,
        task: str = "open_slide",
        image_size: int = 64,
        split: str = "train",
        observe_image: bool = True,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        shadows: bool = False,
        cameras: Sequence[str] = ("desk",),
        split_overrides: Mapping[str, str] | None = None,
    ):
        self.task: Task = get_task(task)
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size!r}")
        if split not in randomization.SPLITS:
            raise ValueError(f"split must be one of {randomization.SPLITS}, got {split!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        cameras = scene.check_cameras(cameras)
        self.image_size = image_size
        self.cameras = cameras
        self.shadows = bool(shadows)
        self.split = split
        self.split_overrides = randomization.check_overrides(split_overrides)
        self.observe_image = observe_image
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps or self.task.max_episode_steps
        self.instruction = self.task.instruction

        self.model = mujoco.MjModel.from_xml_string(scene.build_mjcf(shadows=self.shadows))
        self.data = mujoco.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        self._index()
        self._light_diffuse = self.model.light_diffuse[0].copy()
        self._desk_rgba = self.model.geom_rgba[self._desk_geom].copy()

        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        obs_spaces = {
            "ee_pos": spaces.Box(-np.inf, np.inf, (3,), dtype=np.float32),
            "gripper": spaces.Box(0.0, 1.0, (1,), dtype=np.float32),
            "object_state": spaces.Box(-np.inf, np.inf, (OBJECT_STATE_DIM,), dtype=np.float32),
        }
        if observe_image:
            obs_spaces["image"] = spaces.Box(0, 255, (image_size, image_size * len(cameras), 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)

        self._steps = 0
        self._progress = 0
        self._caption_choice: list[int] = [0] * len(self.task.events)

    # -- model bookkeeping --------------------------------------------------------------------------

    def _index(self) -> None:
        m = self.model

        def qadr(joint: str) -> int:
            return int(m.jnt_qposadr[m.joint(joint).id])

        self._ee_q = [qadr(j) for j in ("ee_x", "ee_y", "ee_z")]
        self._ee_v = [int(m.jnt_dofadr[m.joint(j).id]) for j in ("ee_x", "ee_y", "ee_z")]
        self._finger_q = [qadr("finger_left"), qadr("finger_right")]
        self._object_q = {obj: qadr(obj) for obj in scene.OBJECTS}
        self._drawer_q = qadr("drawer")
        self._slide_q = qadr("slide")
        self._button_q = {c: qadr(f"button_{c}") for c in scene.BUTTONS}
        self._desk_geom = m.geom("desk_top").id
        self._camera_ids = [m.camera(scene.CAMERAS[c]).id for c in self.cameras]

    # -- gymnasium API ------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        init = randomization.sample_initial_state(self.np_random, self.split, self.split_overrides)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        for obj, (x, y) in init.object_xy.items():
            a = self._object_q[obj]
            yaw = init.object_yaw.get(obj, 0.0)
            d.qpos[a:a + 7] = [x, y, scene.OBJECT_REST_Z[obj], np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        d.qpos[self._ee_q] = init.ee_pos
        d.qpos[self._finger_q] = scene.FINGER_MAX_OPEN
        d.ctrl[:3] = init.ee_pos
        d.ctrl[3:5] = scene.FINGER_MAX_OPEN
        m.light_diffuse[0] = self._light_diffuse * init.light / 0.6
        m.geom_rgba[self._desk_geom, :3] = np.clip(self._desk_rgba[:3] + init.desk_shift, 0, 1)
        mujoco.mj_forward(m, d)
        mujoco.mj_step(m, d, nstep=20)  # let the objects settle onto the desk

        self._steps = 0
        self._progress = 0
        self._caption_choice = [int(self.np_random.integers(len(e.captions))) for e in self.task.events]
        obs = self._observation()
        self._advance_events(DeskState.from_obs(obs))
        return obs, self._info()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action.tolist()}")
        if np.any(np.abs(action) > 1.0 + 1e-6):
            raise ValueError(f"action out of range [-1, 1]: {action.tolist()}")
        d = self.data
        target = d.qpos[self._ee_q] + action[:3] * scene.EE_MAX_STEP
        d.ctrl[:3] = np.clip(target, [r[0] for r in scene.EE_RANGE], [r[1] for r in scene.EE_RANGE])
        d.ctrl[3:5] = scene.FINGER_MAX_OPEN * (1.0 - action[3]) / 2.0
        mujoco.mj_step(self.model, d, nstep=scene.CONTROL_SUBSTEPS)
        self._steps += 1

        obs = self._observation()
        self._advance_events(DeskState.from_obs(obs))
        success = self.success
        truncated = self._steps >= self.max_episode_steps and not success
        return obs, float(success), success, truncated, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_image()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # -- events -------------------------------------------------------------------------------------

    @property
    def success(self) -> bool:
        return self._progress == len(self.task.events)

    def _advance_events(self, state: DeskState) -> None:
        events = self.task.events
        while self._progress < len(events) and events[self._progress].reached(state):
            self._progress += 1

    def _info(self) -> dict[str, Any]:
        index = min(self._progress, len(self.task.events) - 1)
        event = self.task.events[index]
        return {
            "success": self.success,
            "event": event.name,
            "event_index": index,
            "events_done": self._progress,  # events reached so far, in order; all of them is success
            "caption": event.captions[self._caption_choice[index]],
            "instruction": self.instruction,
            "task": self.task.name,
        }

    # -- observation --------------------------------------------------------------------------------

    def object_state(self) -> np.ndarray:
        q = self.data.qpos
        out = np.empty(OBJECT_STATE_DIM, dtype=np.float32)
        for obj in scene.OBJECTS:
            a = self._object_q[obj]
            s0, s1 = OBJECT_STATE_LAYOUT[f"{obj}_pos"]
            out[s0:s1 + 4] = q[a:a + 7]
        out[OBJECT_STATE_LAYOUT["drawer"][0]] = q[self._drawer_q]
        out[OBJECT_STATE_LAYOUT["slide"][0]] = q[self._slide_q]
        for colour, a in self._button_q.items():
            out[OBJECT_STATE_LAYOUT[f"button_{colour}"][0]] = -q[a]
        return out

    def _observation(self) -> dict[str, np.ndarray]:
        q = self.data.qpos
        obs = {
            "ee_pos": q[self._ee_q].astype(np.float32),
            "gripper": np.array([q[self._finger_q].mean() / scene.FINGER_MAX_OPEN], dtype=np.float32),
            "object_state": self.object_state(),
        }
        if self.observe_image:
            obs["image"] = self._render_image()
        return obs

    def _render_image(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
        views = []
        for camera in self._camera_ids:
            self._renderer.update_scene(self.data, camera=camera)
            views.append(self._renderer.render())
        return views[0] if len(views) == 1 else np.concatenate(views, axis=1)

"""vans_sim: a RoboDesk-style tabletop simulator on MuJoCo, with scripted experts, datasets and scoring.

Importing the package registers the gymnasium id ``vans_sim/RoboDesk-v0``.
"""

import os

# Offscreen rendering needs a GL backend chosen before mujoco is imported; EGL through Mesa works
# without a display. Anything the user set wins.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import gymnasium as gym  # noqa: E402

from vans_sim.env import RoboDeskEnv  # noqa: E402
from vans_sim.tasks import CHAINED_TASKS, SINGLE_TASKS, TASKS, get_task  # noqa: E402

ENV_ID = "vans_sim/RoboDesk-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="vans_sim.env:RoboDeskEnv")

__version__ = "0.1.0"
__all__ = ["ENV_ID", "RoboDeskEnv", "TASKS", "SINGLE_TASKS", "CHAINED_TASKS", "get_task"]

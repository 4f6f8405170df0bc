"""A named view of the desk's state, built from an observation.

Task checks and scripted experts both read the world through :class:`DeskState`, and both build it
from the same observation arrays, so an expert can run on a vector environment's batched
observations and the success checks can be recomputed from a recorded dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vans_sim import scene

# Layout of ``obs["object_state"]``: name -> (start, stop). Positions are world metres, quaternions
# are MuJoCo's (w, x, y, z); drawer and slide are their opening in metres; buttons are their
# depression in metres (positive when pushed down).
OBJECT_STATE_LAYOUT: dict[str, tuple[int, int]] = {}
_offset = 0
for _name, _size in (
    ("upright_block_pos", 3), ("upright_block_quat", 4),
    ("flat_block_pos", 3), ("flat_block_quat", 4),
    ("ball_pos", 3), ("ball_quat", 4),
    ("drawer", 1), ("slide", 1),
    ("button_red", 1), ("button_green", 1), ("button_blue", 1),
):
    OBJECT_STATE_LAYOUT[_name] = (_offset, _offset + _size)
    _offset += _size
OBJECT_STATE_DIM = _offset

# Half width of each object along the finger axis (x): how far apart the fingers stop when holding it.
GRASP_HALF_WIDTH = {"upright_block": scene.UPRIGHT_HALF[0], "flat_block": scene.FLAT_HALF[0], "ball": scene.BALL_RADIUS}


@dataclass(frozen=True)
class DeskState:
    """Everything a task check or an expert needs, in world coordinates."""

    ee_pos: np.ndarray  # (3,) tool centre point
    finger_opening: float  # metres from the centre to each finger pad, 0 = closed
    object_state: np.ndarray  # (OBJECT_STATE_DIM,)

    @classmethod
    def from_obs(cls, obs: dict) -> "DeskState":
        return cls(
            ee_pos=np.asarray(obs["ee_pos"], dtype=np.float64),
            finger_opening=float(np.asarray(obs["gripper"])[0]) * scene.FINGER_MAX_OPEN,
            object_state=np.asarray(obs["object_state"], dtype=np.float64),
        )

    def field(self, name: str) -> np.ndarray:
        start, stop = OBJECT_STATE_LAYOUT[name]
        return self.object_state[start:stop]

    def pos(self, obj: str) -> np.ndarray:
        return self.field(f"{obj}_pos")

    @property
    def drawer(self) -> float:
        return float(self.field("drawer")[0])

    @property
    def slide(self) -> float:
        return float(self.field("slide")[0])

    def button(self, colour: str) -> float:
        return float(self.field(f"button_{colour}")[0])

    def holds(self, obj: str) -> bool:
        """True when ``obj`` sits between the fingers and the fingers rest on it.

        Judged from positions alone: the object's centre is between the pads and the fingers have
        stopped near its half width instead of closing fully or standing open.
        """
        offset = self.pos(obj) - self.ee_pos
        between = abs(offset[0]) < 0.025 and abs(offset[1]) < 0.03 and -0.06 < offset[2] < 0.05
        half = GRASP_HALF_WIDTH[obj]
        closed_on_it = half - 0.012 < self.finger_opening < half + 0.015
        return bool(between and closed_on_it)

    # -- derived geometry used by several tasks --------------------------------------------------

    def drawer_face_y(self) -> float:
        """y of the drawer panel's outer face, which moves toward -y as the drawer opens."""
        return scene.DRAWER_FRONT_Y - 0.001 - self.drawer

    def knob_pos(self) -> np.ndarray:
        knob_y = scene.SLIDE_Y - scene.SLIDE_HALF[1] - scene.KNOB_HALF[1]
        return np.array([scene.SLIDE_X + self.slide, knob_y, scene.KNOB_Z])

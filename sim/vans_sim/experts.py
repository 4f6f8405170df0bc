"""Closed-loop scripted experts, one per task, that act from the observation alone.

Each single task has a skill: a small state machine of waypoints for the tool point plus a gripper
command. A chained task runs its subtasks' skills one after the other. Skills read the world from
``obs`` through :class:`~vans_sim.state.DeskState`, so an expert runs the same on one environment
and on a vector environment, and re-plans from what it sees: a block that slips out of the fingers
is grasped again.
"""

from __future__ import annotations

import numpy as np

from vans_sim import scene
from vans_sim.state import GRASP_HALF_WIDTH, DeskState
from vans_sim.tasks import get_task

CLOSE = 1.0
OPEN = -1.0
TRAVEL_Z = scene.DESK_TOP + 0.15  # clears every object on the desk with an empty gripper
CARRY_Z = scene.DESK_TOP + 0.20  # clears the shelf and the desk with a block hanging below
XY_TOLERANCE = 0.006
Z_TOLERANCE = 0.008


def move_toward(ee: np.ndarray, target: np.ndarray, grip: float, gain: float = 1.0) -> np.ndarray:
    """The action that moves the tool point straight toward ``target`` at most one step's length."""
    delta = (np.asarray(target) - ee) / scene.EE_MAX_STEP * gain
    largest = np.max(np.abs(delta))
    if largest > 1.0:
        delta = delta / largest
    return np.array([*delta, grip], dtype=np.float32)


def travel_to(ee: np.ndarray, target: np.ndarray, grip: float, travel_z: float) -> np.ndarray:
    """Rise to ``travel_z``, cross over at that height, then go straight to ``target``."""
    if np.linalg.norm(ee[:2] - target[:2]) > 0.015:
        if ee[2] < travel_z - 0.02:
            return move_toward(ee, np.array([ee[0], ee[1], travel_z]), grip)
        return move_toward(ee, np.array([target[0], target[1], max(travel_z, target[2])]), grip)
    return move_toward(ee, target, grip)


def _near(ee: np.ndarray, target: np.ndarray) -> bool:
    return bool(np.linalg.norm(ee[:2] - target[:2]) < XY_TOLERANCE and abs(ee[2] - target[2]) < Z_TOLERANCE)


class Skill:
    """One single task's controller. ``act`` returns an action; ``done`` turns True once finished."""

    def __init__(self) -> None:
        self.phase = "approach"
        self.timer = 0
        self.done = False

    def goto(self, phase: str) -> None:
        self.phase, self.timer = phase, 0

    def act(self, s: DeskState) -> np.ndarray:
        self.timer += 1
        return self.step(s)

    def step(self, s: DeskState) -> np.ndarray:
        raise NotImplementedError


class PressButton(Skill):
    def __init__(self, colour: str):
        super().__init__()
        self.colour = colour
        self.xy = np.array(scene.BUTTONS[colour])

    def step(self, s):
        ee = s.ee_pos
        above = np.array([*self.xy, scene.DESK_TOP + 0.10])
        if s.button(self.colour) > scene.BUTTON_PRESSED + 0.001:
            self.done = True
        if self.done:
            return move_toward(ee, np.array([*self.xy, TRAVEL_Z]), CLOSE)
        if self.phase == "approach":
            if _near(ee, above):
                self.goto("press")
            return travel_to(ee, above, CLOSE, TRAVEL_Z)
        # Aim the fingertips below the button's full travel so the press always bottoms out.
        press_z = scene.DESK_TOP + scene.BUTTON_HEIGHT - scene.BUTTON_TRAVEL + scene.FINGER_BELOW - 0.01
        return move_toward(ee, np.array([*self.xy, press_z]), CLOSE, gain=0.7)


class OpenDrawer(Skill):
    def step(self, s):
        ee = s.ee_pos
        slot = np.array([scene.DRAWER_X, s.drawer_face_y() - 0.024, scene.DRAWER_Z + 0.01])
        if s.drawer > scene.DRAWER_OPEN + 0.02:
            self.done = True
        if self.done:
            return move_toward(ee, np.array([ee[0], ee[1], TRAVEL_Z]), CLOSE)
        if self.phase == "approach":
            if _near(ee, slot):
                self.goto("pull")
            return travel_to(ee, slot, CLOSE, TRAVEL_Z)
        if abs(ee[2] - slot[2]) > 0.03 or abs(ee[0] - slot[0]) > 0.03:  # slipped off: start again
            self.goto("approach")
        return move_toward(ee, slot + np.array([0.0, -0.05, 0.0]), CLOSE, gain=0.6)


class OpenSlide(Skill):
    def step(self, s):
        ee = s.ee_pos
        knob = s.knob_pos()
        beside = knob + np.array([-(scene.KNOB_HALF[0] + 2 * scene.FINGER_HALF[0] + 0.01), -0.004, -0.004])
        if s.slide > scene.SLIDE_OPEN + 0.02:
            self.done = True
        if self.done:
            return move_toward(ee, np.array([ee[0] - 0.03, ee[1] - 0.03, TRAVEL_Z]), CLOSE)
        if self.phase == "approach":
            if _near(ee, beside):
                self.goto("push")
            return travel_to(ee, beside, CLOSE, TRAVEL_Z)
        if abs(ee[1] - beside[1]) > 0.02 or abs(ee[2] - beside[2]) > 0.02:
            self.goto("approach")
        return move_toward(ee, beside + np.array([0.05, 0.0, 0.0]), CLOSE, gain=0.6)


GRASP_Z = {
    "upright_block": scene.DESK_TOP + 2 * scene.UPRIGHT_HALF[2] - 0.035,
    "flat_block": scene.DESK_TOP + scene.FINGER_BELOW + 0.004,
    "ball": scene.DESK_TOP + scene.BALL_RADIUS,
}


class PickAndPlace(Skill):
    """Grasp ``obj`` from above, lift it, and (unless ``place`` is None) put it at a place.

    ``place(s)`` gives the tool point where the object is let go; ``None`` means lifting is the task.
    """

    def __init__(self, obj: str, place=None, lift_to: float = CARRY_Z):
        super().__init__()
        self.obj = obj
        self.place = place
        self.lift_to = lift_to

    def step(self, s):
        ee, obj = s.ee_pos, s.pos(self.obj)
        grasp = np.array([obj[0], obj[1], GRASP_Z[self.obj]])
        if self.phase == "approach":
            if _near(ee, grasp):
                self.goto("close")
            return travel_to(ee, grasp, OPEN, TRAVEL_Z)
        if self.phase == "close":
            # Wait until the fingers have stopped on the object.
            if self.timer >= 4 and s.finger_opening < GRASP_HALF_WIDTH[self.obj] + 0.012:
                self.goto("lift")
            if self.timer > 12:
                self.goto("approach")
            return move_toward(ee, grasp, CLOSE)
        if self.phase in ("lift", "carry", "lower") and not s.holds(self.obj):
            self.goto("approach")  # dropped it: grasp again
            return move_toward(ee, np.array([ee[0], ee[1], TRAVEL_Z]), OPEN)
        if self.phase == "lift":
            target = np.array([ee[0], ee[1], self.lift_to])
            if abs(ee[2] - self.lift_to) < Z_TOLERANCE:
                if self.place is None:
                    self.done = True
                else:
                    self.goto("carry")
            return move_toward(ee, target, CLOSE)
        if self.phase == "carry":
            release = self.place(s)
            over = np.array([release[0], release[1], self.lift_to])
            if np.linalg.norm(ee[:2] - over[:2]) < XY_TOLERANCE:
                self.goto("lower")
            return move_toward(ee, over, CLOSE)
        if self.phase == "lower":
            release = self.place(s)
            if _near(ee, release):
                self.goto("release")
            return move_toward(ee, release, CLOSE, gain=0.7)
        if self.phase == "release":
            if self.timer > 5:
                self.done = True
                self.goto("retreat")
            return move_toward(ee, ee, OPEN)
        return move_toward(ee, np.array([ee[0], ee[1], TRAVEL_Z]), OPEN, gain=0.5)  # retreat


def _bin_release(s: DeskState) -> np.ndarray:
    return np.array([sum(scene.BIN_X) / 2, sum(scene.BIN_Y) / 2, CARRY_Z])


def _off_table_release(s: DeskState) -> np.ndarray:
    return np.array([-scene.DESK_HALF[0] - 0.12, s.ee_pos[1], CARRY_Z])


def _shelf_release(s: DeskState) -> np.ndarray:
    return np.array([sum(scene.SHELF_X) / 2, sum(scene.SHELF_Y) / 2, scene.SHELF_FLOOR + scene.BALL_RADIUS + 0.012])


def _stack_release(s: DeskState) -> np.ndarray:
    flat = s.pos("flat_block")
    # Held 3.5 cm below its top, the upright block's bottom hangs 6.5 cm under the tool point.
    z = flat[2] + scene.FLAT_HALF[2] + 2 * scene.UPRIGHT_HALF[2] - 0.035 + 0.006
    return np.array([flat[0], flat[1], z])


def make_skill(single_task: str) -> Skill:
    if single_task.startswith("push_"):
        return PressButton(single_task.removeprefix("push_"))
    factories = {
        "open_drawer": OpenDrawer,
        "open_slide": OpenSlide,
        "lift_upright_block": lambda: PickAndPlace("upright_block", None, scene.DESK_TOP + 0.22),
        "flat_block_in_bin": lambda: PickAndPlace("flat_block", _bin_release),
        "upright_block_off_table": lambda: PickAndPlace("upright_block", _off_table_release),
        "ball_in_shelf": lambda: PickAndPlace("ball", _shelf_release),
        "stack": lambda: PickAndPlace("upright_block", _stack_release),
    }
    return factories[single_task]()


class ScriptedExpert:
    """The scripted expert of one task, for one environment.

    >>> expert = ScriptedExpert("open_drawer_then_push_red")
    >>> action = expert.act(obs)  # after env.reset(); call expert.reset() at every env reset
    """

    def __init__(self, task: str):
        self.task = get_task(task)
        self.reset()

    def reset(self) -> None:
        self.skills = [make_skill(name) for name in self.task.subtasks]
        self.current = 0

    def act(self, obs: dict) -> np.ndarray:
        s = DeskState.from_obs(obs)
        while self.current < len(self.skills) - 1 and self.skills[self.current].done:
            self.current += 1
        return np.clip(self.skills[self.current].act(s), -1.0, 1.0)

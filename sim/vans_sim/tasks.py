"""The tasks: instructions, the ordered events of each, their captions and success checks.

A task is a sequence of events. Each event has a name, a few paraphrased captions and a check on
the desk's state that says the event has happened. The environment latches events in order: the
current event is the first one not yet reached, and the task succeeds when the last one is reached.
Because events are checks on the world and not on a policy's internals, a scripted expert, a
random policy and the planner are all labelled the same way.

Chained tasks are concatenations of single tasks, so that one episode holds several events worth
predicting ("what happens next" after the drawer is open is the press of the red button).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vans_sim import scene
from vans_sim.state import DeskState

Check = Callable[[DeskState], bool]


@dataclass(frozen=True)
class Event:
    name: str
    captions: tuple[str, ...]  # paraphrases; the first is the canonical one
    reached: Check


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    success_condition: str  # the final check, in words, for `vans-sim tasks`
    events: tuple[Event, ...]
    max_episode_steps: int
    subtasks: tuple[str, ...]  # the single tasks a chained task is made of; (name,) otherwise

    @property
    def chained(self) -> bool:
        return len(self.subtasks) > 1


def _xy_dist(a: np.ndarray, b) -> float:
    return float(np.linalg.norm(np.asarray(a)[:2] - np.asarray(b)[:2]))


# --- single-task builders -----------------------------------------------------------------------

def _push_button(colour: str) -> Task:
    bx, by = scene.BUTTONS[colour]
    events = (
        Event(f"reach_{colour}_button", (
            f"the gripper moves above the {colour} button",
            f"the gripper goes to the {colour} button",
            f"the gripper hovers over the {colour} button",
        ), lambda s: _xy_dist(s.ee_pos, (bx, by)) < 0.02 and s.ee_pos[2] < scene.DESK_TOP + 0.1),
        Event(f"press_{colour}_button", (
            f"the gripper presses the {colour} button",
            f"the gripper pushes the {colour} button down",
            f"the {colour} button is pressed",
        ), lambda s: s.button(colour) > scene.BUTTON_PRESSED),
    )
    return Task(f"push_{colour}", f"push the {colour} button",
                f"{colour} button depressed by more than {scene.BUTTON_PRESSED * 1000:.0f} mm",
                events, 120, (f"push_{colour}",))


def _in_drawer_slot(s: DeskState) -> bool:
    face = s.drawer_face_y()
    return (abs(s.ee_pos[0] - scene.DRAWER_X) < 0.04
            and face - scene.HANDLE_GAP < s.ee_pos[1] < face
            and abs(s.ee_pos[2] - scene.DRAWER_Z) < 0.03)


def _open_drawer() -> Task:
    events = (
        Event("reach_drawer_handle", (
            "the gripper reaches for the drawer handle",
            "the gripper moves behind the drawer handle",
            "the gripper hooks the drawer handle",
        ), _in_drawer_slot),
        Event("pull_drawer", (
            "the gripper pulls the drawer open",
            "the drawer slides out",
            "the gripper opens the drawer",
        ), lambda s: s.drawer > scene.DRAWER_OPEN),
    )
    return Task("open_drawer", "open the drawer",
                f"drawer pulled out by more than {scene.DRAWER_OPEN * 100:.0f} cm",
                events, 150, ("open_drawer",))


def _open_slide() -> Task:
    def beside_knob(s: DeskState) -> bool:
        knob = s.knob_pos()
        return (abs(s.ee_pos[1] - knob[1]) < 0.03 and abs(s.ee_pos[2] - knob[2]) < 0.03
                and -0.07 < s.ee_pos[0] - knob[0] < 0.0)

    events = (
        Event("reach_slide_knob", (
            "the gripper moves next to the knob of the sliding panel",
            "the gripper goes to the sliding panel",
            "the gripper reaches the panel's knob",
        ), beside_knob),
        Event("push_slide", (
            "the gripper slides the panel to the right",
            "the sliding panel opens",
            "the gripper pushes the sliding panel open",
        ), lambda s: s.slide > scene.SLIDE_OPEN),
    )
    return Task("open_slide", "open the sliding panel",
                f"panel slid right by more than {scene.SLIDE_OPEN * 100:.0f} cm",
                events, 150, ("open_slide",))


_OBJECT_WORDS = {"upright_block": "upright block", "flat_block": "flat block", "ball": "ball"}


def _pick_events(obj: str, lift_height: float) -> tuple[Event, ...]:
    """Reach, grasp and lift ``obj``: the opening of every pick-and-place task."""
    word = _OBJECT_WORDS[obj]
    rest = scene.OBJECT_REST_Z[obj]
    return (
        Event(f"reach_{obj}", (
            f"the gripper reaches down to the {word}",
            f"the gripper moves to the {word}",
            f"the gripper lowers itself around the {word}",
        ), lambda s: _xy_dist(s.ee_pos, s.pos(obj)) < 0.025 and s.ee_pos[2] < s.pos(obj)[2] + 0.06),
        Event(f"grasp_{obj}", (
            f"the gripper grasps the {word}",
            f"the gripper closes on the {word}",
            f"the fingers grip the {word}",
        ), lambda s: s.holds(obj)),
        Event(f"lift_{obj}", (
            f"the gripper lifts the {word}",
            f"the gripper raises the {word}",
            f"the {word} is picked up",
        ), lambda s: s.holds(obj) and s.pos(obj)[2] > rest + lift_height),
    )


def _lift_upright_block() -> Task:
    return Task("lift_upright_block", "lift the upright block",
                "upright block held 10 cm above its resting height",
                _pick_events("upright_block", 0.10), 120, ("lift_upright_block",))


def _in_bin(p: np.ndarray) -> bool:
    return (scene.BIN_X[0] < p[0] < scene.BIN_X[1] and scene.BIN_Y[0] < p[1] < scene.BIN_Y[1]
            and p[2] < scene.DESK_TOP)


def _over_bin(p: np.ndarray) -> bool:
    return scene.BIN_X[0] + 0.02 < p[0] < scene.BIN_X[1] - 0.02 and scene.BIN_Y[0] + 0.02 < p[1] < scene.BIN_Y[1] - 0.02


def _flat_block_in_bin() -> Task:
    events = _pick_events("flat_block", 0.05) + (
        Event("carry_flat_block_to_bin", (
            "the gripper carries the flat block over the bin",
            "the flat block is moved above the bin",
            "the gripper brings the flat block to the bin",
        ), lambda s: s.holds("flat_block") and _over_bin(s.pos("flat_block"))),
        Event("drop_flat_block_in_bin", (
            "the gripper drops the flat block into the bin",
            "the flat block falls into the bin",
            "the gripper lets go of the flat block above the bin",
        ), lambda s: _in_bin(s.pos("flat_block")) and not s.holds("flat_block")),
    )
    return Task("flat_block_in_bin", "put the flat block in the bin",
                "flat block inside the bin's walls, below the desk top", events, 150, ("flat_block_in_bin",))


def _upright_block_off_table() -> Task:
    edge = -scene.DESK_HALF[0]
    events = _pick_events("upright_block", 0.05) + (
        Event("carry_upright_block_off_table", (
            "the gripper carries the upright block past the edge of the table",
            "the upright block is moved beyond the table's edge",
            "the gripper takes the upright block off to the side of the table",
        ), lambda s: s.holds("upright_block") and s.pos("upright_block")[0] < edge - 0.04),
        Event("drop_upright_block_off_table", (
            "the gripper drops the upright block off the table",
            "the upright block falls to the floor",
            "the gripper lets the upright block fall beside the table",
        ), lambda s: s.pos("upright_block")[2] < scene.DESK_TOP - 0.1),
    )
    return Task("upright_block_off_table", "push the upright block off the table",
                "upright block 10 cm or more below the desk top", events, 150, ("upright_block_off_table",))


def _in_shelf(p: np.ndarray) -> bool:
    return (scene.SHELF_X[0] < p[0] < scene.SHELF_X[1] and scene.SHELF_Y[0] < p[1] < scene.SHELF_Y[1]
            and scene.SHELF_FLOOR < p[2] < scene.SHELF_FLOOR + 0.06)


def _ball_in_shelf() -> Task:
    def over_shelf(s: DeskState) -> bool:
        p = s.pos("ball")
        return (s.holds("ball") and scene.SHELF_X[0] + 0.03 < p[0] < scene.SHELF_X[1] - 0.03
                and scene.SHELF_Y[0] + 0.03 < p[1] < scene.SHELF_Y[1] - 0.03)

    events = _pick_events("ball", 0.05) + (
        Event("carry_ball_to_shelf", (
            "the gripper carries the ball over the shelf",
            "the ball is moved above the shelf",
            "the gripper brings the ball to the shelf",
        ), over_shelf),
        Event("place_ball_in_shelf", (
            "the gripper puts the ball down in the shelf",
            "the ball is placed on the shelf",
            "the gripper releases the ball into the shelf",
        ), lambda s: _in_shelf(s.pos("ball")) and not s.holds("ball")),
    )
    return Task("ball_in_shelf", "put the ball in the shelf", "ball resting inside the shelf's lips",
                events, 150, ("ball_in_shelf",))


def _stacked(s: DeskState) -> bool:
    up, flat = s.pos("upright_block"), s.pos("flat_block")
    expected_z = flat[2] + scene.FLAT_HALF[2] + scene.UPRIGHT_HALF[2]
    quat = s.field("upright_block_quat")
    upright = 1 - 2 * (quat[1] ** 2 + quat[2] ** 2) > 0.9  # cosine of the tilt from vertical
    return (_xy_dist(up, flat) < 0.03 and abs(up[2] - expected_z) < 0.015 and upright
            and not s.holds("upright_block"))


def _stack() -> Task:
    events = _pick_events("upright_block", 0.05) + (
        Event("carry_upright_block_over_flat_block", (
            "the gripper carries the upright block over the flat block",
            "the upright block is moved above the flat block",
            "the gripper brings the upright block to the flat block",
        ), lambda s: s.holds("upright_block") and _xy_dist(s.pos("upright_block"), s.pos("flat_block")) < 0.02),
        Event("stack_upright_block", (
            "the gripper sets the upright block down on the flat block",
            "the upright block is stacked on the flat block",
            "the gripper places the upright block on top of the flat block",
        ), _stacked),
    )
    return Task("stack", "stack the upright block on the flat block",
                "upright block standing on the flat block and released", events, 150, ("stack",))


def _chain(first: Task, second: Task) -> Task:
    return Task(
        f"{first.name}_then_{second.name}",
        f"{first.instruction}, then {second.instruction}",
        f"{first.success_condition}, then {second.success_condition}",
        first.events + second.events,
        first.max_episode_steps + second.max_episode_steps,
        first.subtasks + second.subtasks,
    )


def _build_registry() -> dict[str, Task]:
    singles = [
        _open_slide(), _open_drawer(), _push_button("red"), _push_button("green"), _push_button("blue"),
        _lift_upright_block(), _flat_block_in_bin(), _upright_block_off_table(), _ball_in_shelf(), _stack(),
    ]
    by_name = {t.name: t for t in singles}
    chained = [
        _chain(by_name["open_drawer"], by_name["push_red"]),
        _chain(by_name["open_slide"], by_name["push_blue"]),
        _chain(by_name["push_green"], by_name["lift_upright_block"]),
    ]
    return {t.name: t for t in singles + chained}


TASKS: dict[str, Task] = _build_registry()
SINGLE_TASKS = tuple(name for name, t in TASKS.items() if not t.chained)
CHAINED_TASKS = tuple(name for name, t in TASKS.items() if t.chained)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def resolve_tasks(spec: str) -> list[str]:
    """Turn a CLI task list ('all', 'single', 'chained' or comma-separated names) into task names."""
    if spec == "all":
        return list(TASKS)
    if spec == "single":
        return list(SINGLE_TASKS)
    if spec == "chained":
        return list(CHAINED_TASKS)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("empty task list")
    for n in names:
        get_task(n)
    return names
